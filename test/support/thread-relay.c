/*
 * A workload whose connection to the agent is made by a worker thread, for the attestation tests of unusual process
 * shapes. Tests compile it with cc at run time.
 *
 *   thread-relay <agent-socket> <listen-socket> main-exits|main-stays
 *
 * A worker thread connects to the agent's socket, listens on <listen-socket>, prints "ready" once the process has
 * the shape asked for, accepts one connection there and relays bytes both ways between it and the agent, so the
 * agent sees this process as the caller of whatever a test sends through it. The process exits when either side
 * closes, and when its stdin ends: the test starts it with a pipe there that only the test's process holds, so that
 * the relay goes with the test file however it dies (a SIGKILL, the runner's timeout) instead of waiting on in accept()
 * for a connection nobody will make. Whatever comes on stdin is dropped.
 *
 *   main-exits  the main thread calls pthread_exit() after the worker has connected (as some runtimes do): the
 *               thread-group leader is a zombie while the worker lives on, and /proc/<pid>/exe fails
 *   main-stays  the main thread waits for the worker: the connection is a non-main thread's
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *agent_path;
static const char *listen_path;
static int main_exits;
static pthread_t main_thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t connected_cond = PTHREAD_COND_INITIALIZER;
static int connected;

static void die(const char *what) {
  fprintf(stderr, "thread-relay: %s: %s\n", what, strerror(errno));
  exit(2);
}

static struct sockaddr_un address(const char *path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    die(path);
  }
  strcpy(a.sun_path, path);
  return a;
}

/* Reads and drops what stdin holds; exits at its end (or on an error reading it). */
static void drain_stdin(void) {
  char buffer[512];
  ssize_t n = read(0, buffer, sizeof buffer);
  if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) exit(0);
}

/* Waits for `fds` as poll(2) does, retried on EINTR. */
static void wait_for(struct pollfd *fds, nfds_t n) {
  while (poll(fds, n, -1) < 0) {
    if (errno != EINTR) die("poll");
  }
}

/* Copies what is readable on `from` to `to`; returns 0 at end of stream. */
static int pump(int from, int to) {
  char buffer[65536];
  ssize_t n = read(from, buffer, sizeof buffer);
  if (n <= 0) return 0;
  for (ssize_t done = 0; done < n;) {
    ssize_t w = write(to, buffer + done, (size_t)(n - done));
    if (w < 0) return 0;
    done += w;
  }
  return 1;
}

static void *worker(void *unused) {
  (void)unused;
  int agent = socket(AF_UNIX, SOCK_STREAM, 0);
  if (agent < 0) die("socket");
  struct sockaddr_un a = address(agent_path);
  if (connect(agent, (struct sockaddr *)&a, sizeof a) != 0) die("connect to the agent");

  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  struct sockaddr_un l = address(listen_path);
  if (bind(listener, (struct sockaddr *)&l, sizeof l) != 0) die("bind");
  if (listen(listener, 1) != 0) die("listen");

  pthread_mutex_lock(&lock);
  connected = 1;
  pthread_cond_signal(&connected_cond);
  pthread_mutex_unlock(&lock);
  /* The main thread can be joined once it has called pthread_exit(). */
  if (main_exits && pthread_join(main_thread, NULL) != 0) die("pthread_join");
  if (write(1, "ready\n", 6) != 6) die("write");

  struct pollfd waiting[2] = { { .fd = listener, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
  for (;;) {
    wait_for(waiting, 2);
    if (waiting[1].revents != 0) drain_stdin();
    if (waiting[0].revents != 0) break;
  }
  int client = accept(listener, NULL, NULL);
  if (client < 0) die("accept");
  struct pollfd fds[3] = { { .fd = client, .events = POLLIN }, { .fd = agent, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
  for (;;) {
    wait_for(fds, 3);
    if (fds[2].revents != 0) drain_stdin();
    if (fds[0].revents != 0 && !pump(client, agent)) break;
    if (fds[1].revents != 0 && !pump(agent, client)) break;
  }
  exit(0);
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[3], "main-exits") != 0 && strcmp(argv[3], "main-stays") != 0)) {
    fprintf(stderr, "usage: thread-relay <agent-socket> <listen-socket> main-exits|main-stays\n");
    return 2;
  }
  agent_path = argv[1];
  listen_path = argv[2];
  main_exits = strcmp(argv[3], "main-exits") == 0;
  main_thread = pthread_self();
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) die("pthread_create");
  pthread_mutex_lock(&lock);
  while (!connected) pthread_cond_wait(&connected_cond, &lock);
  pthread_mutex_unlock(&lock);
  if (main_exits) pthread_exit(NULL);
  pthread_join(t, NULL);
  return 0;
}
