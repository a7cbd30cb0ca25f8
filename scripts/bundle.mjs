// Bundles the CLI (dist/tsrun.cjs, and dist/tsrun-run.cjs for `run` and `create` alone) and the
// storage worker (dist/worker.cjs) into one CommonJS file each. Start-up time is the point: bin/tsrun reads and compiles the whole bundle on every
// command, so it is minified (half the bytes to read and parse; dist/*.cjs.map maps stack traces
// back with `node --enable-source-maps`), and command modules are reached through import(), which
// esbuild turns into lazily run module bodies.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { builtinModules } from "node:module";
import { build } from "esbuild";

/**
 * Two changes to commander's Command for start-up time; the build fails if its source changes.
 * - It requires node:child_process at load, for executable subcommands that tsrun never uses;
 *   loading it costs 6-10 ms of every command's start on a slow machine: now on first use.
 * - It finds an option by scanning every option of the command (Command._findOption), and
 *   registering one looks twice for a clash: O(n^2) for `run`'s 110 options, 2-3 ms of its
 *   start in V8's interpreter, and a scan per argument when parsing. Each command gets an index
 *   of its flags instead, extended as options are added (commander only ever pushes to
 *   this.options), which returns what the scan did: the first option with that flag.
 */
const commanderForStartup = {
  name: "commander-for-startup",
  setup(b) {
    b.onLoad({ filter: /commander[\\/]lib[\\/]command\.js$/ }, async (args) => {
      let text = await readFile(args.path, "utf8");
      const scan = "  _findOption(arg) {\n    return this.options.find((option) => option.is(arg));\n  }";
      if (!text.includes(scan)) throw new Error(`${args.path}: Command._findOption is not the scan scripts/bundle.mjs expects; update it`);
      const indexed = [
        "  _findOption(arg) {",
        "    if (this._tsrunIndexed === undefined) { this._tsrunIndex = new Map(); this._tsrunIndexed = 0; }",
        "    for (; this._tsrunIndexed < this.options.length; this._tsrunIndexed++) {",
        "      const o = this.options[this._tsrunIndexed];",
        "      if (o.short && !this._tsrunIndex.has(o.short)) this._tsrunIndex.set(o.short, o);",
        "      if (o.long && !this._tsrunIndex.has(o.long)) this._tsrunIndex.set(o.long, o);",
        "    }",
        "    return this._tsrunIndex.get(arg);",
        "  }",
      ].join("\n");
      text = text.replace(scan, indexed);
      const eager = "const childProcess = require('node:child_process');";
      if (!text.includes(eager)) throw new Error(`${args.path}: "${eager}" not found; update scripts/bundle.mjs`);
      const lazy = "const childProcess = { spawn: (...a) => require('node:child_process').spawn(...a) };";
      return { contents: text.replace(eager, lazy), loader: "js" };
    });
  },
};

/**
 * A default import of a Node built-in (`import path from "node:path"`) is compiled by esbuild to
 * `__toESM(require("node:path"))`, which copies every property of the module into a new object
 * as a getter, once per importing module: 64 copies of node:path and 12 of node:fs, ~1.7 ms of
 * every command's start in V8's interpreter. Such an import is pointed at a small ES module whose
 * default export is the built-in itself (what __toESM's default was: require()'s value), so
 * nothing is copied. Named and namespace imports are left to esbuild.
 */
const DEFAULT_BUILTIN_IMPORT = /^import\s+([A-Za-z_$][\w$]*)\s+from\s+(["'])((?:node:)?[a-z_/]+)\2;?[ \t]*$/gm;
const builtinDefaults = {
  name: "builtin-defaults",
  setup(b) {
    const builtins = new Set(builtinModules);
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$|[\\/]node_modules[\\/](tar|minipass|minizlib|chownr|mkdirp|yallist|@isaacs[\\/]fs-minipass)[\\/].*\.js$/ }, async (args) => {
      const text = await readFile(args.path, "utf8");
      const contents = text.replace(DEFAULT_BUILTIN_IMPORT, (line, name, quote, spec) =>
        builtins.has(spec.replace(/^node:/, "")) ? `import ${name} from ${quote}builtin-default:${spec.replace(/^node:/, "")}${quote};` : line,
      );
      return { contents, loader: args.path.endsWith(".ts") ? "ts" : "js" };
    });
    b.onResolve({ filter: /^builtin-default:/ }, (args) => ({ path: args.path.slice("builtin-default:".length), namespace: "builtin-default" }));
    b.onLoad({ filter: /.*/, namespace: "builtin-default" }, (args) => ({ contents: `export default require(${JSON.stringify(`node:${args.path}`)});`, loader: "js" }));
  },
};

const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
  // import.meta.url is made from the bundle's path when code reads it, not at every start
  // (loading node:url and parsing a URL: ~0.6 ms); code that only needs the bundle's path gets
  // __filename itself as __TSRUN_BUNDLE_FILE__ (src/native.ts).
  define: {
    "import.meta.url": "__tsrunImportMeta.url",
    __TSRUN_BUNDLE_FILE__: "__filename",
    __TSRUN_VERSION__: JSON.stringify(JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")).version),
  },
  banner: { js: "const __tsrunImportMeta={get url(){return require('url').pathToFileURL(__filename).href}};" },
  plugins: [commanderForStartup, builtinDefaults],
};

// tsrun-run.cjs: `run` and `create` alone (src/cli/main-run.ts), which bin/tsrun loads for them.
const entries = { "dist/tsrun.cjs": "src/cli/main.ts", "dist/tsrun-run.cjs": "src/cli/main-run.ts", "dist/worker.cjs": "src/store/worker.ts" };
const outputs = Object.keys(entries);
// The CLI bundles are loaded by bin/tsrun, not by require(): they are written as the function
// expression Node's Module.wrap would make of them, so that bin/tsrun compiles the file's text as
// it is. Wrapping it at run time made V8 copy the whole text once more (a cons string flattened),
// and fresh memory is what costs on a slow machine.
const CLI_WRAPPER = { banner: "(function (exports, require, module, __filename, __dirname) {", footer: "\n})" };
await Promise.all(
  outputs.map((outfile) => {
    const cli = outfile !== "dist/worker.cjs";
    const banner = { js: cli ? CLI_WRAPPER.banner + common.banner.js : common.banner.js };
    return build({ ...common, banner, ...(cli ? { footer: { js: CLI_WRAPPER.footer } } : {}), entryPoints: [entries[outfile]], outfile, write: false }).then(writeOutputs);
  }),
);

/**
 * Writes esbuild's output files under a temporary name and renames them into place: bin/tsrun
 * maps the bundles into memory (native/loader.cc) for the life of each command, and a file
 * rewritten in place under a running `tsrun run` would change (or, shorter, crash) the code it
 * compiles lazily. A rename leaves the mapped file as it was. The CLI bundles must be pure ASCII:
 * the loader hands V8 their bytes as Latin-1 text.
 */
async function writeOutputs(result) {
  for (const out of result.outputFiles) {
    const isCli = /tsrun(-run)?\.cjs$/.test(out.path);
    const bad = isCli ? out.contents.findIndex((byte) => byte > 0x7f) : -1;
    if (bad >= 0) {
      const context = Buffer.from(out.contents.subarray(Math.max(0, bad - 40), bad + 20)).toString("utf8");
      throw new Error(`${out.path}: a non-ASCII character at byte ${bad} (near ${JSON.stringify(context)}); write it as an escape (\\u00b5)`);
    }
    const tmp = `${out.path}.tmp-${process.pid}`;
    await mkdir(path.dirname(out.path), { recursive: true });
    await writeFile(tmp, out.contents);
    await rename(tmp, out.path);
  }
}

// import() of our own modules becomes a lazily run module body; import() of anything esbuild
// leaves outside the bundle (node:tty...) stays a real dynamic import, which in bin/tsrun's
// vm.Script starts Node's ES module loader and prints an experimental-feature warning. Built-ins
// are loaded lazily through src/builtin.ts instead.
for (const file of outputs) {
  const text = await readFile(file, "utf8");
  const found = /\bimport\(\s*["'`][^"'`]*["'`]\s*\)/.exec(text);
  if (found) throw new Error(`${file}: a real dynamic ${found[0]} is left in the bundle; use src/builtin.ts`);
}
