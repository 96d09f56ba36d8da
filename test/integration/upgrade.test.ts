/**
 * Upgrading in place: the current meshid-server and meshid-agent started on the data dirs an older version left
 * (test/fixtures/upgrade/<commit>/, made by scripts/make-upgrade-fixture.sh), as an operator upgrading servers first
 * does. The certificates in a fixture expire a day after it was made, so the daemons run under libfaketime at the
 * fixture's time (skipped where libfaketime is not installed, as clock-jump.test.ts is). The fixture's entries select
 * the uid it was made as (root, as .ci/run runs the tests); under another uid the test is skipped.
 *
 * Each fixture's first start is killed (SIGKILL) inside its schema migrations when it has any to run, so the start
 * that follows must finish an upgrade interrupted at its most delicate point.
 *
 * This file: the fixtures of schema version 5 and later (and any new one); upgrade-early-schemas.test.ts the others.
 * The test itself is test/support/upgrade-kit's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIXTURES, fixtureNames, upgradeTests } from '../support/upgrade-kit.js';

test('upgrade fixtures are present', () => {
  assert.ok(fixtureNames.length > 0, `no fixture under ${FIXTURES}`);
});

upgradeTests((schemaVersion) => schemaVersion >= 5);
