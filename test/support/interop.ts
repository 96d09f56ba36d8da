/**
 * Whether an interop test can run: the tools of another gRPC stack are Debian packages a developer may not have.
 * Without them the test is skipped and says what to install; under MESHID_REQUIRE_INTEROP=1 (CI, which installs
 * them) that is an error instead, so the tests cannot be skipped there unnoticed.
 */
export function interopSkip(name: string, available: boolean, packages: string): string | false {
  if (available) return false;
  const why = `needs ${packages} (apt-get install them; .ci/run does)`;
  if (process.env['MESHID_REQUIRE_INTEROP'] === '1') throw new Error(`${name}: ${why}`);
  return why;
}
