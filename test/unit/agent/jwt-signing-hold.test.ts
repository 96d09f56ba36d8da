import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JwtSigningHold } from '../../../src/agent/cache/jwt-signing-hold.js';
import { isMeshidError, resourceExhausted } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import { SigningBudgetWait } from '../../../src/agent/cache/signing-budget-wait.js';

/** The budget refusal reaches the caller of the refused signing as the server gave it. */
const budgetRefusal = (err: unknown): boolean => isMeshidError(err, 'resource_exhausted') && /^signing rate limit reached; retry in 3 s$/.test(err.message);

/** A signing that waits for its answer (`answers`, in call order), counting how many ran at once at most. */
function countingSigner(): { sign: () => Promise<string>; answers: Array<() => void>; most: () => number } {
  let running = 0;
  let most = 0;
  const answers: Array<() => void> = [];
  const sign = (): Promise<string> => {
    running++;
    most = Math.max(most, running);
    return new Promise<string>((resolve) => answers.push(() => (running--, resolve('jwt'))));
  };
  return { sign, answers, most: () => most };
}

/**
 * After a budget refusal signings go one at a time. A signing that ends wakes the next in line, which resumes a
 * microtask later; a newcomer whose own promise chain reaches the hold in that gap must queue, not run alongside it.
 * The newcomer is started at every depth of microtask hops from 0 to 12 after the running signing is answered, so one
 * of them lands in the gap whatever the exact depth of the hold's own awaits.
 */
for (let hops = 0; hops <= 12; hops++) {
  test(`after a budget refusal, a signing arriving ${hops} microtask(s) after one ends does not run alongside the woken next one`, async () => {
    const clock = new FakeClock(Date.now() - 3600_000);
    const hold = new JwtSigningHold(clock, () => 0.5);
    await assert.rejects(hold.run(() => Promise.reject(resourceExhausted('signing rate limit reached; retry in 3 s'))), budgetRefusal);
    clock.advance(4000);

    const { sign, answers, most } = countingSigner();
    const first = hold.run(sign);
    const second = hold.run(sign);
    await new Promise((r) => setImmediate(r));
    assert.equal(answers.length, 1, 'the second waits for its turn');

    answers.shift()!();
    let chain: Promise<unknown> = Promise.resolve();
    for (let i = 0; i < hops; i++) chain = chain.then(() => undefined);
    const newcomer = chain.then(() => hold.run(sign));
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setImmediate(r));
      answers.shift()?.();
    }
    await Promise.all([first, second, newcomer]);
    assert.equal(most(), 1, 'never more than one signing at a time while recovering');
  });
}

test('a signing sent before a refusal and answered after it does not end the one-at-a-time recovery', async () => {
  const clock = new FakeClock(Date.now() - 3600_000);
  const hold = new JwtSigningHold(clock, () => 0.5);
  // Sent while signing was free; its answer comes after another signing's refusal.
  let answerEarly!: () => void;
  const early = hold.run(() => new Promise<string>((resolve) => (answerEarly = () => resolve('jwt'))));
  await assert.rejects(hold.run(() => Promise.reject(resourceExhausted('signing rate limit reached; retry in 3 s'))), budgetRefusal);
  answerEarly();
  await early;
  clock.advance(4000);

  const { sign, answers, most } = countingSigner();
  const calls = [hold.run(sign), hold.run(sign), hold.run(sign)];
  await new Promise((r) => setImmediate(r));
  assert.equal(answers.length, 1, 'after the retry time, one signing goes and the others wait for its answer');
  while (answers.length > 0) {
    answers.shift()!();
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(calls);
  assert.equal(most(), 1);
});

/**
 * The signing sent in turn while recovering, answered after a refusal that came while it was out: it was admitted
 * before that refusal, so its success says nothing of the budget now. Refused meanwhile: a JWT signing sent before the
 * recovery began and answered late, or an X.509 signing (one budget for both).
 */
for (const refusedBy of ['a late JWT signing', 'an X.509 signing'] as const) {
  test(`a signing sent in turn and answered after ${refusedBy} was refused does not end the one-at-a-time recovery`, async () => {
    const clock = new FakeClock(Date.now() - 3600_000);
    const budget = new SigningBudgetWait(clock);
    const hold = new JwtSigningHold(clock, () => 0.5, budget);
    let refuseLate!: () => void;
    const late =
      refusedBy === 'a late JWT signing'
        ? hold.run(() => new Promise<string>((_, reject) => (refuseLate = () => reject(resourceExhausted('signing rate limit reached; retry in 3 s')))))
        : undefined;
    await assert.rejects(hold.run(() => Promise.reject(resourceExhausted('signing rate limit reached; retry in 3 s'))), budgetRefusal);
    clock.advance(4000);

    let answerInTurn!: () => void;
    const inTurn = hold.run(() => new Promise<string>((resolve) => (answerInTurn = () => resolve('jwt'))));
    await new Promise((r) => setImmediate(r));
    if (late !== undefined) {
      refuseLate();
      await assert.rejects(late, budgetRefusal);
    } else budget.holdUntil(clock.now() + 3500);
    assert.notEqual(hold.heldUntil(), undefined, 'signing is held again');
    answerInTurn();
    await inTurn;
    clock.advance(4000);

    const { sign, answers, most } = countingSigner();
    const calls = [hold.run(sign), hold.run(sign), hold.run(sign)];
    await new Promise((r) => setImmediate(r));
    assert.equal(answers.length, 1, 'after the new retry time, one signing goes and the others wait for its answer');
    while (answers.length > 0) {
      answers.shift()!();
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(calls);
    assert.equal(most(), 1);
  });
}
