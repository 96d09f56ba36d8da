import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listenFailure } from '../../../src/common/listen-failure.js';

const SETTING = '--bind-address, bind_address';

test('a failed listen names the address and the setting, and says what to do for each errno', () => {
  const cases: Array<[string, RegExp]> = [
    ['No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 10.0.0.1:8081]', /another process is listening on that port; stop it or choose another port$/],
    ['listen EADDRNOTAVAIL: address not available 10.0.0.1:8081', /no network interface of this host has that address; use one of its addresses, or 0\.0\.0\.0 for all$/],
    ['No address added out of total 1 resolved errors: [listen EACCES: permission denied 10.0.0.1:8081]', /permission denied \(EACCES\): a security policy/],
    ['Name resolution failed for target dns:nohost.invalid:8081', /the host name does not resolve/],
    ['something new', /: something new$/],
  ];
  for (const [message, expected] of cases) {
    const err = listenFailure(new Error(message), '10.0.0.1:8081', SETTING);
    assert.equal(err.code, 'failed_precondition');
    assert.ok(err.message.startsWith(`cannot listen on 10.0.0.1:8081 (${SETTING}): `), err.message);
    assert.match(err.message, expected);
  }
});

test('permission denied on a port from 1024 up is not blamed on the port number', () => {
  // ip_unprivileged_port_start raised, or an LSM or seccomp policy: "choose a port from 1024 up" would send the
  // operator back to the port they already chose.
  const high = listenFailure(new Error('No address added out of total 1 resolved errors: [listen EACCES: permission denied 10.0.0.1:8081]'), '10.0.0.1:8081', SETTING);
  assert.doesNotMatch(high.message, /below 1024|from 1024 up/);
  assert.match(high.message, /: permission denied \(EACCES\): a security policy .* forbids this process that port$/);
  const low = listenFailure(new Error('listen EACCES: permission denied 0.0.0.0:443'), '[::]:443', SETTING);
  assert.match(low.message, /ports below 1024 need root or CAP_NET_BIND_SERVICE/);
});
