import { describe, expect, it } from "vitest";
import { retryAfterMs } from "../../src/image/registry/client.js";

describe("Retry-After", () => {
  it("reads delay-seconds and HTTP dates; ignores what it cannot read", () => {
    const now = Date.parse("Mon, 30 Nov 2026 03:00:00 GMT");
    expect(retryAfterMs("5", now)).toBe(5000);
    expect(retryAfterMs(" 0 ", now)).toBe(0);
    expect(retryAfterMs("Mon, 30 Nov 2026 03:00:12 GMT", now)).toBe(12_000);
    expect(retryAfterMs("Mon, 30 Nov 2026 02:59:00 GMT", now)).toBe(0);
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs("soon", now)).toBeUndefined();
    expect(retryAfterMs(["7", "9"], now)).toBe(7000);
  });
});
