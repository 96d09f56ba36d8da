#!/usr/bin/env node
// Each executable's entry (written into dist/bin by scripts/bundle.mjs beside the CommonJS bundle it runs): compiles the
// bundle with the V8 code cache made for it at build time, so that a start deserializes compiled code instead of
// parsing ~1.7 MB of JavaScript (Node 20 has no module.enableCompileCache; bench/HISTORY.md, P6).
//
// The cache file starts with the SHA-256 of the exact bundle it was made for; another bundle's cache is not offered to
// V8, and V8 itself refuses one from another Node version or other V8 flags. Then the CRC-32 of V8's data: a release
// V8 checks only its header, and deserializes damaged data (a flipped bit on disk) into a crash (V8_Fatal, SIGSEGV)
// instead of refusing it, so damaged data is not offered either. Without a usable cache the bundle is
// compiled from its source, as a plain start would. With --enable-source-maps the bundle is loaded through require(),
// whose source map support a vm.Script does not have on Node 20, so stack traces name the TypeScript sources.
//
// MESHID_CODE_CACHE_REPORT=1 says on stderr which way the bundle was loaded (the tests read it). scripts/bundle.mjs
// makes the cache by running the executable once with MESHID_CODE_CACHE_WRITE=1: it is written when that run exits.
import { isAscii } from 'node:buffer';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { crc32 } from 'node:zlib';

const bundle = fileURLToPath(new URL(__BUNDLE__, import.meta.url));
const cacheFile = `${bundle}.cache`;
const DIGEST_BYTES = 32;
/** The digest, then the CRC-32 of the data V8 made (big-endian). */
const HEADER_BYTES = DIGEST_BYTES + 4;
const require = createRequire(bundle);
const report = (how) => {
  if (process.env.MESHID_CODE_CACHE_REPORT === '1') process.stderr.write(`code cache: ${how}\n`);
};

if (process.sourceMapsEnabled) {
  report('not used (source maps enabled)');
  require(bundle);
} else {
  const source = fs.readFileSync(bundle);
  const digest = createHash('sha256').update(source).digest();
  let cachedData;
  try {
    const cache = fs.readFileSync(cacheFile);
    if (cache.length > HEADER_BYTES && digest.equals(cache.subarray(0, DIGEST_BYTES))) {
      const data = cache.subarray(HEADER_BYTES);
      if (crc32(data) === cache.readUInt32BE(DIGEST_BYTES)) cachedData = data;
      else report('damaged');
    } else {
      report('made for another bundle');
    }
  } catch {
    report('absent');
  }
  // Node's own CommonJS wrapper, on the bundle's first line: line numbers in stack traces stay the bundle's.
  // bundle.mjs writes it as ASCII, which latin1 decodes quicker than utf8 does; utf8 if it has been edited since.
  const text = source.toString(isAscii(source) ? 'latin1' : 'utf8');
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${text}\n})`;
  const script = new vm.Script(wrapped, { filename: bundle, ...(cachedData !== undefined && { cachedData }) });
  if (cachedData !== undefined) report(script.cachedDataRejected ? 'rejected by V8' : 'used');
  if (process.env.MESHID_CODE_CACHE_WRITE === '1') {
    // At exit, so that the cache holds every function the run compiled, not only the top level.
    process.once('exit', () => {
      const data = script.createCachedData();
      const sum = Buffer.alloc(4);
      sum.writeUInt32BE(crc32(data));
      fs.writeFileSync(cacheFile, Buffer.concat([digest, sum, data]));
    });
  }
  const module = { exports: {}, id: bundle, filename: bundle, loaded: false };
  script.runInThisContext()(module.exports, require, module, bundle, path.dirname(bundle));
}
