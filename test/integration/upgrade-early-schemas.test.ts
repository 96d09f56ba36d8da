/**
 * Upgrading in place from the versions of schema versions 1 to 4: upgrade.test.ts says what each fixture's test
 * checks (test/support/upgrade-kit) and runs the later ones.
 */
import { upgradeTests } from '../support/upgrade-kit.js';

upgradeTests((schemaVersion) => schemaVersion < 5);
