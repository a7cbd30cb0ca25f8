// Runs a CommonJS bundle through V8's code cache (BUNDLE.v8cache beside it, written by the first
// run), as bin/tsrun runs tsrun's bundle: the commander floor of bench/startup-floor.sh.
// Usage: node bench/floor/cached.cjs BUNDLE
"use strict";
const { readFileSync, writeFileSync } = require("node:fs");
const vm = require("node:vm");
const file = process.argv[2];
const cacheFile = `${file}.v8cache`;
const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, "utf8")}\n})`;
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // First run: compile, then keep the cache.
}
const script = new vm.Script(source, { filename: file, cachedData });
const mod = { exports: {} };
script.runInThisContext()(mod.exports, require, mod, file, __dirname);
if (cachedData === undefined || script.cachedDataRejected) writeFileSync(cacheFile, script.createCachedData());
