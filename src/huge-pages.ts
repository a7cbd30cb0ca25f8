// Transparent huge pages for tsrun's own Node processes. bin/tsrun's first line asks glibc's malloc
// for them (GLIBC_TUNABLES glibc.malloc.hugetlb=1) and takes the request out of its environment
// at once, so that containers and the programs tsrun runs never inherit it. The storage workers
// are Node processes streaming whole layers through buffers, where fresh pages are what costs (a
// page fault is ~20 us on this project's machines): they get it again here.

const TUNABLE = "glibc.malloc.hugetlb=1";

/** env, with huge pages added to any GLIBC_TUNABLES it has. */
export function withHugePages(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const tunables = env.GLIBC_TUNABLES;
  if (tunables?.split(":").includes(TUNABLE)) return env;
  return { ...env, GLIBC_TUNABLES: tunables ? `${tunables}:${TUNABLE}` : TUNABLE };
}
