// COPY --chmod's symbolic modes: BuildKit applies them with dchapes-mode (BSD setmode); these are
// that package's own Apply cases (os.ModeDir as the directory flag, its set-id and sticky bits
// as 04000, 02000, 01000), with the umask each case gives.
import { describe, expect, it } from "vitest";
import { applyChmod, ChmodSyntaxError, parseChmod } from "../../src/build/file-mode.js";

const DIR = 0o200000;
const cases: [number, number, number, string][] = [
  [0o777, 0o000, 0, "="], [0o777, 0o777, 0, "+"], [0o421, 0o421, 0, "+"], [0o777, 0o777, 0, "-"], [0o421, 0o421, 0, "-"],
  [0o421, 0o1421, 0, "+t"], [0o1421, 0o421, 0, "-t"],
  [0, 0o400, 0, "u+r"], [0, 0o200, 0, "u+w"], [0, 0o100, 0, "u+x"], [0, 0, 0, "u+X"], [0o001, 0o101, 0, "u+X"], [DIR, 0o100, 0, "u+X"], [0, 0o4000, 0, "u+s"],
  [0, 0o040, 0, "g+r"], [0, 0o020, 0, "g+w"], [0, 0o010, 0, "g+x"], [0, 0, 0, "g+X"], [0o100, 0o110, 0, "g+X"], [DIR, 0o010, 0, "g+X"], [0, 0o2000, 0, "g+s"],
  [0, 0o004, 0, "o+r"], [0, 0o002, 0, "o+w"], [0, 0o001, 0, "o+x"], [0, 0, 0, "o+X"], [0o100, 0o101, 0, "o+X"], [DIR, 0o001, 0, "o+X"], [0, 0, 0, "o+s"],
  [0, 0o421, 0, "0421"], [0, 0o7421, 0, "07421"],
  [0, 0o444, 0, "+r"], [0, 0o222, 0, "+w"], [0, 0o111, 0, "+x"], [0, 0, 0, "+X"], [0o010, 0o111, 0, "+X"], [DIR, 0o111, 0, "+X"], [0, 0o6000, 0, "+s"],
  [0, 0o440, 0o034, "+r"], [0, 0o220, 0o052, "+w"], [0, 0o110, 0o061, "+x"],
  [0o777, 0o333, 0, "-r"], [0o777, 0o555, 0, "-w"], [0o777, 0o666, 0, "-x"], [0o777, 0o777, 0, "-X"], [DIR | 0o777, 0o777, 0, "-X"], [0o6777, 0o777, 0, "-s"],
  [0o777, 0o337, 0o037, "-r"], [0o777, 0o557, 0o057, "-w"], [0o777, 0o667, 0o067, "-x"],
  [0o777, 0o377, 0, "u-r"], [0o777, 0o577, 0, "u-w"], [0o777, 0o677, 0, "u-x"], [0o777, 0o777, 0, "u-X"], [DIR | 0o777, 0o777, 0, "u-X"], [0o4777, 0o777, 0, "u-s"],
  [0, 0o600, 0, "u=rw"], [0o777, 0o677, 0, "u=rw"], [0o777, 0o077, 0, "u="], [0, 0o666, 0, "=rw"], [0o777, 0o666, 0, "=rw"],
  [0o042, 0o442, 0, "u=g"], [0o742, 0o442, 0, "u=g"], [0o722, 0o022, 0, "u=g-w"], [0o742, 0o442, 0, "u=g-w"], [0o762, 0o462, 0, "u=g-w"], [0o772, 0o572, 0, "u=g-w"],
  [0o021, 0o121, 0, "u+o"], [0o021, 0o221, 0, "u+g"], [0o021, 0o321, 0, "u+go"],
  [0o011, 0o111, 0o037, "u+uo"], [0o111, 0o011, 0o037, "-u"], [0o111, 0o011, 0o037, "-Xu"], [0o111, 0o011, 0o037, "-uX"],
  [0, 0o764, 0, "a=r,ug=rw,u+x"], [0o777, 0o764, 0, "a=r,ug=rw,u+x"],
  [0, 0o1624, 0, "o+r,g+w,a+t,g-s,u+og"], [0o2100, 0o1724, 0, "o+r,g+w,a+t,g-s,u+og"], [DIR | 0o6000, 0o5624, 0, "o+r,g+w,a+t,g-s,u+og"],
  [0o777, 0o644, 0, "644"], [0o777, 0o755, 0, "go-w"], [0o666, 0o664, 0o002, "=rw,+X"], [0o766, 0o775, 0o002, "=rw,+X"], [0o766, 0o765, 0o012, "=rw,+X"],
  [0, 0o755, 0, "u=rwx,go=rx"], [0, 0o755, 0, "u=rwx,go=u-w"], [0o777, 0o700, 0, "go="], [0o770, 0o755, 0, "go=u-w"], [0o670, 0o644, 0, "go=u-w"], [0o570, 0o555, 0, "go=u-w"], [0o370, 0o311, 0, "go=u-w"],
];

describe("--chmod", () => {
  it.each(cases)("%o becomes %o with umask %o and %s", (from, to, umask, spec) => {
    expect(applyChmod(parseChmod(spec, umask), from & 0o7777, (from & DIR) !== 0)).toBe(to);
  });

  it("the builder's umask (0022) masks a clause without u, g, o or a", () => {
    expect(applyChmod(parseChmod("+w"), 0o444, false)).toBe(0o644);
    expect(applyChmod(parseChmod("+x"), 0o644, false)).toBe(0o755);
    expect(applyChmod(parseChmod("a+w"), 0o444, false)).toBe(0o666);
  });

  it("refuses what BuildKit refuses, with its message for what looks numeric", () => {
    for (const bad of ["017777", "01000000000000000007777", "9", "0o755"]) {
      expect(() => parseChmod(bad), bad).toThrow(`invalid chmod parameter: '${bad}'. it should be octal string and between 0 and 07777`);
    }
    for (const bad of ["", ",", "q+r", "z", "u", "g", "o", "go", "u+x,", "u!x"]) expect(() => parseChmod(bad), bad).toThrow(ChmodSyntaxError);
  });
});
