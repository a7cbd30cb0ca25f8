// The sandbox the layer unpacker's tests run in: a fresh destination directory beside a
// sentinel directory that no layer may touch (checked after every test), and small builders for
// tar entries. Runs as root, like the user namespace helper it stands in for, so owners,
// setuid bits, xattrs and whiteouts are real.
import { afterEach, beforeEach, expect } from "vitest";
import { closeSync, constants as fsConstants, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { unpackLayer, type UnpackOptions, type UnpackResult } from "../../src/store/unpack.js";
import { native } from "../../src/native.js";
import type { RawTarEntry } from "./tar-builder.js";

const O_PATH = 0o10000000;

/** The test's scratch dir (holding dest and sentinel only); live bindings, renewed per test. */
export let base: string;
/** Where the layer goes. */
export let dest: string;
/** A directory beside dest holding "keep" (content "original"): no layer may reach it. */
export let sentinel: string;
/** Warnings the unpacker reported in this test. */
export let warnings: string[];

/** Registers the hooks that make a fresh sandbox for each test and check the sentinel after it. */
export function useUnpackSandbox(): void {
  beforeEach(() => {
    base = mkdtempSync(path.join(os.tmpdir(), "tsrun-unpack-"));
    dest = path.join(base, "dest");
    sentinel = path.join(base, "sentinel");
    mkdirSync(dest);
    mkdirSync(sentinel);
    writeFileSync(path.join(sentinel, "keep"), "original");
    warnings = [];
  });

  afterEach(() => {
    // Nothing the layer did may show up beside destDir.
    expect(readdirSync(base).sort()).toEqual(["dest", "sentinel"]);
    expect(readdirSync(sentinel)).toEqual(["keep"]);
    expect(readFileSync(path.join(sentinel, "keep"), "utf8")).toBe("original");
    rmSync(base, { recursive: true, force: true });
  });
}

/** Feeds the bytes in chunks of chunkSize, to cross header and block boundaries anywhere. */
export function unpack(bytes: Buffer, options: Partial<UnpackOptions> = {}, chunkSize = 64 * 1024): Promise<UnpackResult> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  return unpackLayer(Readable.from(chunks), dest, {
    maxUid: 65535,
    maxGid: 65535,
    onWarning: (m) => warnings.push(m),
    ...options,
  });
}

export const at = (rel: string): string => path.join(dest, rel);
export const fileType = (rel: string): number => lstatSync(at(rel)).mode & fsConstants.S_IFMT;
export const perms = (rel: string): number => lstatSync(at(rel)).mode & 0o7777;

export function xattrsOf(rel: string): Record<string, Buffer> {
  const fd = openSync(at(rel), O_PATH | fsConstants.O_NOFOLLOW);
  try {
    return native().getXattrs(fd);
  } finally {
    closeSync(fd);
  }
}

export const file = (name: string, content: string | Buffer, extra: Partial<RawTarEntry> = {}): RawTarEntry => ({ name, content, ...extra });
export const dir = (name: string, extra: Partial<RawTarEntry> = {}): RawTarEntry => ({ name, type: "5", mode: 0o755, ...extra });
export const symlink = (name: string, linkname: string, extra: Partial<RawTarEntry> = {}): RawTarEntry => ({ name, type: "2", linkname, mode: 0o777, ...extra });
export const hardlink = (name: string, linkname: string): RawTarEntry => ({ name, type: "1", linkname });
