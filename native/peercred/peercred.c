/*
 * meshid peercred: the few Linux socket/process calls Node has no API for, as an ABI-stable N-API addon.
 *
 *   peerCred(fd)      -> { pid, uid, gid }   getsockopt(SO_PEERCRED): the peer's credentials at connect() time
 *   peerPidfd(fd)     -> number | -1         a pidfd for the peer: SO_PEERPIDFD (Linux >= 6.5), else pidfd_open(pid)
 *                                            (Linux >= 5.3), else -1 (caller falls back to /proc starttime checks)
 *   pidfdAlive(pidfd) -> boolean             pidfd_send_signal(pidfd, 0): false once the process has been reaped
 *   closeFd(fd)       -> undefined           close(2), for the pidfds above
 *
 * Failures throw an Error shaped like Node's system errors: code ("EBADF"), errno (number), syscall.
 * Linux only: the agent refuses to start elsewhere.
 */
#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <node_api.h>

/* Defined by the kernel since 6.5; older libc headers do not know it, the value is fixed ABI. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static const char *errno_code(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  return "EUNKNOWN";
}

/* Throws `syscall: strerror` with code/errno/syscall properties; returns NULL for the caller to return. */
static napi_value throw_errno(napi_env env, const char *syscall_name, int err) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", syscall_name, strerror(err));
  napi_value code, msg, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok) {
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  if (napi_create_int32(env, err, &errno_value) == napi_ok) napi_set_named_property(env, error, "errno", errno_value);
  if (napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &syscall_value) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall_value);
  }
  napi_throw(env, error);
  return NULL;
}

/* Reads the single integer argument every function takes; throws a TypeError and returns 0 on misuse. */
static int int_arg(napi_env env, napi_callback_info info, const char *fn, int32_t *out) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type;
  double value = -1;
  /* Read as a double and range-check: napi_get_value_int32 would silently wrap 2^32 + 3 to fd 3. */
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number ||
      napi_get_value_double(env, argv[0], &value) != napi_ok || !(value >= 0 && value <= INT32_MAX) ||
      value != (double)(int32_t)value) {
    char message[96];
    snprintf(message, sizeof message, "%s: expected a non-negative integer file descriptor", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return 0;
  }
  *out = (int32_t)value;
  return 1;
}

static int set_int(napi_env env, napi_value object, const char *name, int64_t value) {
  napi_value v;
  return napi_create_int64(env, value, &v) == napi_ok && napi_set_named_property(env, object, name, v) == napi_ok;
}

static napi_value peer_cred(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!int_arg(env, info, "peerCred", &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  if (len != sizeof cred) return throw_errno(env, "getsockopt(SO_PEERCRED)", EPROTO);
  napi_value result;
  if (napi_create_object(env, &result) != napi_ok || !set_int(env, result, "pid", cred.pid) ||
      !set_int(env, result, "uid", cred.uid) || !set_int(env, result, "gid", cred.gid)) {
    napi_throw_error(env, NULL, "peerCred: cannot build the result object");
    return NULL;
  }
  return result;
}

static napi_value peer_pidfd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!int_arg(env, info, "peerPidfd", &fd)) return NULL;
  napi_value result;
  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && len == sizeof pidfd) {
    napi_create_int32(env, pidfd, &result);
    return result;
  }
  /*
   * ENOPROTOOPT: kernel older than 6.5, which has no SO_PEERPIDFD. Any other error is real and fails the connection:
   * EINVAL in particular is what kernels since 6.5 return when the peer has already exited, and falling back to
   * pidfd_open(pid) then would pin whatever process has that pid now (pid reuse), the very thing a pidfd prevents.
   */
  if (errno != ENOPROTOOPT) return throw_errno(env, "getsockopt(SO_PEERPIDFD)", errno);

  struct ucred cred;
  len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  pidfd = -1;
#ifdef SYS_pidfd_open
  /* Pid 0: the peer lives in a pid namespace we cannot see; there is nothing to pin. */
  if (cred.pid > 0) {
    long r = syscall(SYS_pidfd_open, (pid_t)cred.pid, 0);
    if (r >= 0) {
      pidfd = (int)r;
    } else if (errno != ENOSYS) {
      return throw_errno(env, "pidfd_open", errno);
    }
  }
#endif
  napi_create_int32(env, pidfd, &result);
  return result;
}

static napi_value pidfd_alive(napi_env env, napi_callback_info info) {
  int32_t pidfd;
  if (!int_arg(env, info, "pidfdAlive", &pidfd)) return NULL;
  int alive;
#ifdef SYS_pidfd_send_signal
  /* Signal 0 checks existence without sending anything. ESRCH: the process has exited and been reaped.
   * EPERM still means the process exists (we only lack the right to signal it). */
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0) {
    alive = 1;
  } else if (errno == ESRCH) {
    alive = 0;
  } else if (errno == EPERM) {
    alive = 1;
  } else {
    return throw_errno(env, "pidfd_send_signal", errno);
  }
#else
  return throw_errno(env, "pidfd_send_signal", ENOSYS);
#endif
  napi_value result;
  napi_get_boolean(env, alive, &result);
  return result;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!int_arg(env, info, "closeFd", &fd)) return NULL;
  /* Linux always releases the descriptor, even when close() reports EINTR, so never retry. */
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, "close", errno);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  const napi_property_descriptor props[] = {
    { "peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_enumerable, NULL },
    { "peerPidfd", NULL, peer_pidfd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "pidfdAlive", NULL, pidfd_alive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
