/**
 * The entitlement model (entitlement-model.test.ts says what it checks; test/support/entitlement-model-kit) on the
 * suite's second fixed seed, 1098, which meets an eviction, a ban and re-attestations. Run alone by
 * MESHID_MODEL_SEED / MESHID_MODEL_SEEDS, which entitlement-model.test.ts takes.
 */
import { FIXED_SEEDS, modelTest, seedsFromEnvironment } from '../support/entitlement-model-kit.js';

if (seedsFromEnvironment() === undefined) modelTest(FIXED_SEEDS[1]);
