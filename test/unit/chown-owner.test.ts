// COPY/ADD --chown and WORKDIR's USER resolved against the image's /etc/passwd and /etc/group
// as BuildKit resolves them (llb.WithUser and the file op's readUser).
import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { resolveOwner } from "../../src/build/copy-step.js";

function layer(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "tsrun-chown-"));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

describe("--chown", () => {
  const image = [layer({ "etc/passwd": "root:x:0:0::/root:/bin/sh\nnode:x:1001:1002::/home/node:/bin/sh\n", "etc/group": "root:x:0:\nnode:x:1002:\nwww-data:x:33:\n" })];

  it.each([
    ["node", { uid: 1001, gid: 1002 }],
    ["node:node", { uid: 1001, gid: 1002 }],
    ["node:www-data", { uid: 1001, gid: 33 }],
    ["1234", { uid: 1234, gid: 1234 }],
    ["1234:55", { uid: 1234, gid: 55 }],
    ["root", { uid: 0, gid: 0 }],
    // BuildKit: an empty user part is uid 0.
    [":www-data", { uid: 0, gid: 33 }],
    ["node:", { uid: 1001, gid: 1002 }],
  ])("%s", (spec, owner) => {
    const warnings: string[] = [];
    expect(resolveOwner(spec, image, (m) => warnings.push(m))).toEqual(owner);
    expect(warnings).toEqual([]);
  });

  it("names the image lacks are 0, with a warning, as Docker builds them (a scratch image has no /etc/passwd)", () => {
    const warnings: string[] = [];
    expect(resolveOwner("nonroot:nonroot", [layer({})], (m) => warnings.push(m))).toEqual({ uid: 0, gid: 0 });
    expect(resolveOwner("node:nogroup", image, (m) => warnings.push(m))).toEqual({ uid: 1001, gid: 1002 });
    expect(warnings).toEqual(['"nonroot:nonroot": no user nonroot in /etc/passwd, no group nonroot in /etc/group: 0:0 is used, as Docker does', '"node:nogroup": no group nogroup in /etc/group: 1001:1002 is used, as Docker does']);
  });
});
