import { describe, expect, it } from "vitest";
import { familiarRepository, normaliseName, parseReference } from "../../src/image/reference.js";

describe("image references (Docker's normalisation)", () => {
  it.each([
    ["busybox", "docker.io/library/busybox:latest"],
    ["ubuntu:22.04", "docker.io/library/ubuntu:22.04"],
    ["user/app", "docker.io/user/app:latest"],
    ["index.docker.io/library/alpine", "docker.io/library/alpine:latest"],
    ["localhost/app:1", "localhost/app:1"],
    ["127.0.0.1:5000/a/b/c:v2", "127.0.0.1:5000/a/b/c:v2"],
    ["quay.io/org/img", "quay.io/org/img:latest"],
    [`busybox@sha256:${"a".repeat(64)}`, `docker.io/library/busybox@sha256:${"a".repeat(64)}`],
    [`busybox:1@sha256:${"b".repeat(64)}`, `docker.io/library/busybox:1@sha256:${"b".repeat(64)}`],
  ])("%s -> %s", (input, expected) => expect(normaliseName(input)).toBe(expected));

  it.each(["", "UPPER", "a b", "a:", "a::b", "-a", "a/../b", "a@sha256:short", "a:" + "t".repeat(200)])("rejects %j", (input) =>
    expect(() => parseReference(input)).toThrow(/invalid reference format/),
  );

  it("prints the familiar form", () => {
    expect(familiarRepository("docker.io/library/busybox")).toBe("busybox");
    expect(familiarRepository("docker.io/user/app")).toBe("user/app");
    expect(familiarRepository("localhost:5000/x")).toBe("localhost:5000/x");
  });
});
