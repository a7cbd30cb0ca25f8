// `tsrun run` end to end: a real bin/tsrun process, run as the unprivileged test user, real
// namespaces and overlay mounts, on images built from Debian's busybox-static.
import { beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync, chownSync } from "node:fs";
import path from "node:path";
import { asUser, cliEnv, env, importBusybox, onPty, scratchDir, shAsUser, tsrun } from "./helpers.js";

function containerDirs(): string[] {
  const dir = path.join(env.storeRoot, "containers");
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^[a-f0-9]{64}$/.test(n)) : [];
}

function containerIdByName(name: string): string {
  return readlinkSync(path.join(env.storeRoot, "containers", "names", name));
}

function subordinateStart(file: string): number {
  const name = env.user ? "tsrun-test" : String(process.getuid?.());
  const line = readFileSync(file, "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no ${file} entry for ${name}`);
  return Number(line.split(":")[1]);
}

beforeAll(async () => {
  await importBusybox("busybox");
});


describe("namespaces and isolation", () => {
  it("maps container root to the user and 1..65536 to the subordinate range", async () => {
    const r = await tsrun(["run", "--rm", "busybox", "cat", "/proc/self/uid_map", "/proc/self/gid_map"]);
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
    const uid = env.user?.uid ?? process.getuid?.();
    const gid = env.user?.gid ?? process.getgid?.();
    expect(rows[0]).toEqual([0, uid, 1]);
    expect(rows[1]).toEqual([1, subordinateStart("/etc/subuid"), 65536]);
    expect(rows[2]).toEqual([0, gid, 1]);
    expect(rows[3]).toEqual([1, subordinateStart("/etc/subgid"), 65536]);
  });

  it("runs the command as pid 1 with its own hostname, uts and network namespace (--network none: only lo, up)", async () => {
    const r = await tsrun(["run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo $$; hostname; ls /sys/class/net; cat /sys/class/net/lo/operstate; id -u"]);
    expect(r.code).toBe(0);
    const [pid, hostname, nets, lo, uid] = r.stdout.trim().split("\n");
    expect(pid).toBe("1");
    expect(hostname).toMatch(/^[a-f0-9]{12}$/);
    expect(nets).toBe("lo");
    expect(lo).toBe("unknown"); // loopback reports "unknown" when up
    expect(uid).toBe("0");
  });

  it("sees only its own processes", async () => {
    // A shell glob: no other process is started to look.
    const r = await tsrun(["run", "--rm", "busybox", "sh", "-c", "echo /proc/[0-9]*"]);
    expect(r.stdout.trim()).toBe("/proc/1");
  });

  it("cannot write host paths: its /tmp, /proc/sys and masked paths are its own", async () => {
    const marker = `/tmp/tsrun-escape-${Date.now()}`;
    const r = await tsrun([
      "run", "--rm", "busybox", "sh", "-c",
      `touch ${marker} && echo made; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote-proc; echo "timer_list $(wc -c < /proc/timer_list)"; echo "firmware $(ls /sys/firmware | wc -l)"; touch /sys/x 2>/dev/null && echo wrote-sys; echo done`,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("made");
    expect(r.stdout).not.toContain("wrote-proc");
    expect(r.stdout).not.toContain("wrote-sys");
    // Masked as runc does: a file by /dev/null, a directory by an empty read-only tmpfs.
    expect(r.stdout).toContain("timer_list 0");
    expect(r.stdout).toContain("firmware 0");
    expect(existsSync(marker)).toBe(false);
  });

  it("keeps the changes of each container in its own upper dir, owned by subordinate uids", async () => {
    const name = `owner-${Date.now()}`;
    const r = await tsrun(["run", "--name", name, "-u", "alice", "busybox", "sh", "-c", "echo hi > /home/alice/file; mkdir /tmp/d"]);
    expect(r.code).toBe(0);
    const upper = path.join(env.storeRoot, "containers", containerIdByName(name), "upper");
    const st = statSync(path.join(upper, "home", "alice", "file"));
    expect(st.uid).toBe(subordinateStart("/etc/subuid") + 999);
    expect(st.gid).toBe(subordinateStart("/etc/subgid") + 999);
    expect(readFileSync(path.join(upper, "home", "alice", "file"), "utf8")).toBe("hi\n");
    // The image's own layer is unchanged: a second container does not see the file.
    const again = await tsrun(["run", "--rm", "busybox", "ls", "/home/alice"]);
    expect(again.stdout.trim()).toBe("");
  });
});

describe("run options", () => {
  it("--rm removes the container; without it the container stays", async () => {
    const before = containerDirs().length;
    expect((await tsrun(["run", "--rm", "busybox", "true"])).code).toBe(0);
    expect(containerDirs().length).toBe(before);
    expect((await tsrun(["run", "busybox", "true"])).code).toBe(0);
    expect(containerDirs().length).toBe(before + 1);
  });

  it("--name records the name and refuses a duplicate", async () => {
    const name = `named-${Date.now()}`;
    expect((await tsrun(["run", "--name", name, "busybox", "true"])).code).toBe(0);
    const record = JSON.parse(readFileSync(path.join(env.storeRoot, "containers", containerIdByName(name), "container.json"), "utf8"));
    expect(record.name).toBe(name);
    const dup = await tsrun(["run", "--name", name, "busybox", "true"]);
    expect(dup.code).toBe(125);
    expect(dup.stderr).toMatch(/already in use/);
  });

  it("-e KEY=VALUE, -e KEY from the host, --env-file", async () => {
    const dir = scratchDir("envfile");
    const file = path.join(dir, "vars.env");
    writeFileSync(file, "# comment\nFROMFILE=file value\nOVERRIDE=file\n");
    if (env.user) chownSync(file, env.user.uid, env.user.gid);
    const r = await tsrun(["run", "--rm", "--env-file", file, "-e", "A=1", "-e", "OVERRIDE=flag", "-e", "HOSTVAR", "-e", "UNSET_ON_HOST", "busybox", "env"], {
      env: { HOSTVAR: "from host" },
    });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("A=1");
    expect(lines).toContain("FROMFILE=file value");
    expect(lines).toContain("OVERRIDE=flag");
    expect(lines).toContain("HOSTVAR=from host");
    expect(lines).toContain("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    expect(lines.some((l) => l.startsWith("UNSET_ON_HOST"))).toBe(false);
    // Files from other tools: a UTF-8 BOM, CRLF line ends, indented keys, quotes kept as
    // written (docker's opts/file.go); a missing file is tsrun's one-line error, not Node's
    // (Node 20 reads --env-file anywhere on its command line unless told "--").
    writeFileSync(file, '\ufeffBOM=1\r\n  INDENTED=2\r\nQUOTED="q"\r\n');
    const quirks = await tsrun(["run", "--rm", "--env-file", file, "busybox", "env"]);
    expect(quirks.stdout.split("\n")).toEqual(expect.arrayContaining(["BOM=1", "INDENTED=2", 'QUOTED="q"']));
    const missing = await tsrun(["run", "--rm", "--env-file", path.join(dir, "missing.env"), "busybox", "true"]);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/^Error: .*missing\.env.*\n$/);
  });

  it("-w sets (and creates) the working directory", async () => {
    const r = await tsrun(["run", "--rm", "-w", "/does/not/exist", "busybox", "pwd"]);
    expect(r.stdout.trim()).toBe("/does/not/exist");
    const rel = await tsrun(["run", "--rm", "-w", "relative", "busybox", "pwd"]);
    expect(rel.code).toBe(125);
  });

  it("-u by name, uid, uid:gid and name:group, with supplementary groups from /etc/group", async () => {
    const cases: [string, string][] = [
      ["alice", "uid=1000(alice) gid=1000(alice) groups=44(video),50(staff),1000(alice)"],
      ["1001", "uid=1001(bob) gid=1001(bob) groups=50(staff),1001(bob)"],
      ["1001:50", "uid=1001(bob) gid=50(staff) groups=50(staff)"],
      ["alice:staff", "uid=1000(alice) gid=50(staff) groups=50(staff)"],
      ["4242", "uid=4242 gid=0(root) groups=0(root)"],
    ];
    for (const [spec, expected] of cases) {
      const r = await tsrun(["run", "--rm", "-u", spec, "busybox", "id"]);
      expect(r.stdout.trim(), spec).toBe(expected);
    }
    const home = await tsrun(["run", "--rm", "-u", "alice", "busybox", "sh", "-c", "echo $HOME"]);
    expect(home.stdout.trim()).toBe("/home/alice");
  });

  it("--hostname and --read-only", async () => {
    const h = await tsrun(["run", "--rm", "--hostname", "box1", "busybox", "sh", "-c", "hostname; cat /etc/hostname; grep box1 /etc/hosts"]);
    expect(h.stdout.split("\n").slice(0, 2)).toEqual(["box1", "box1"]);
    expect(h.stdout).toMatch(/127\.0\.1\.1\s+box1/);
    const ro = await tsrun(["run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x || echo refused; touch /tmp/y || echo tmp-refused"]);
    expect(ro.stdout).toContain("refused");
    expect(ro.stderr).toMatch(/Read-only file system/);
  });

  it("--entrypoint replaces the image's ENTRYPOINT", async () => {
    const r = await tsrun(["run", "--rm", "--entrypoint", "/bin/echo", "busybox", "a", "b"]);
    expect(r.stdout).toBe("a b\n");
  });

  it("passes stdin only with -i", async () => {
    const without = await tsrun(["run", "--rm", "busybox", "cat"], { input: "hello" });
    expect(without.stdout).toBe("");
    const withI = await tsrun(["run", "--rm", "-i", "busybox", "cat"], { input: "hello" });
    expect(withI.stdout).toBe("hello");
  });
});

describe("ENTRYPOINT and CMD, every row of Docker's table", () => {
  // Images with each combination; exec_entry/exec_cmd are echo so the argv is visible.
  const variants = {
    none: [] as string[],
    execCmd: ['CMD ["echo","exec_cmd","p1_cmd"]'],
    shellCmd: ["CMD echo exec_cmd p1_cmd $0"],
    shellEntry: ["ENTRYPOINT echo exec_entry p1_entry $0"],
    shellEntryExecCmd: ["ENTRYPOINT echo exec_entry p1_entry $0", 'CMD ["exec_cmd","p1_cmd"]'],
    shellEntryShellCmd: ["ENTRYPOINT echo exec_entry p1_entry $0", "CMD exec_cmd p1_cmd"],
    execEntry: ['ENTRYPOINT ["echo","exec_entry","p1_entry"]'],
    execEntryExecCmd: ['ENTRYPOINT ["echo","exec_entry","p1_entry"]', 'CMD ["exec_cmd","p1_cmd"]'],
    execEntryShellCmd: ['ENTRYPOINT ["echo","exec_entry","p1_entry"]', "CMD exec_cmd p1_cmd"],
  };
  beforeAll(async () => {
    for (const [name, changes] of Object.entries(variants)) await importBusybox(`table-${name.toLowerCase()}`, changes);
  });
  const run = (image: string, ...args: string[]) => tsrun(["run", "--rm", `table-${image.toLowerCase()}`, ...args]);

  it("no ENTRYPOINT, no CMD: error 125", async () => {
    const r = await run("none");
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/no command specified/);
  });
  it("no ENTRYPOINT: CMD runs as given (exec or /bin/sh -c)", async () => {
    expect((await run("execCmd")).stdout).toBe("exec_cmd p1_cmd\n");
    expect((await run("shellCmd")).stdout).toBe("exec_cmd p1_cmd /bin/sh\n");
  });
  it("shell ENTRYPOINT ignores CMD and run arguments", async () => {
    expect((await run("shellEntry")).stdout).toBe("exec_entry p1_entry /bin/sh\n");
    expect((await run("shellEntryExecCmd")).stdout).toBe("exec_entry p1_entry exec_cmd\n");
    expect((await run("shellEntryShellCmd")).stdout).toBe("exec_entry p1_entry /bin/sh\n");
  });
  it("exec ENTRYPOINT gets CMD appended", async () => {
    expect((await run("execEntry")).stdout).toBe("exec_entry p1_entry\n");
    expect((await run("execEntryExecCmd")).stdout).toBe("exec_entry p1_entry exec_cmd p1_cmd\n");
    expect((await run("execEntryShellCmd")).stdout).toBe("exec_entry p1_entry /bin/sh -c exec_cmd p1_cmd\n");
  });
  it("run arguments replace CMD; --entrypoint drops CMD; --entrypoint \"\" clears ENTRYPOINT", async () => {
    expect((await run("execEntryExecCmd", "x", "y")).stdout).toBe("exec_entry p1_entry x y\n");
    expect((await tsrun(["run", "--rm", "--entrypoint", "echo", "table-execentryexeccmd"])).stdout).toBe("\n");
    expect((await tsrun(["run", "--rm", "--entrypoint", "", "table-execentryexeccmd", "echo", "plain"])).stdout).toBe("plain\n");
  });
});

describe("exit statuses", () => {
  it.each([
    [["sh", "-c", "exit 0"], 0],
    [["sh", "-c", "exit 7"], 7],
    // pid 1 cannot be killed from inside its namespace; a child's death status passes through.
    [["sh", "-c", "sleep 10 & kill -KILL $!; wait $!"], 137],
  ])("%j exits %i", async (cmd, code) => {
    expect((await tsrun(["run", "--rm", "busybox", ...(cmd as string[])])).code).toBe(code);
  });
  it("127 when the command is not found, 126 when it cannot be invoked, 125 for tsrun's errors", async () => {
    const notFound = await tsrun(["run", "--rm", "busybox", "no-such-command"]);
    expect(notFound.code).toBe(127);
    expect(notFound.stderr).toMatch(/executable file not found in \$PATH/);
    expect((await tsrun(["run", "--rm", "busybox", "/no/such/path"])).code).toBe(127);
    const notExec = await tsrun(["run", "--rm", "busybox", "/etc/passwd"]);
    expect(notExec.code).toBe(126);
    expect(notExec.stderr).toMatch(/permission denied/i);
    expect((await tsrun(["run", "--rm", "--no-such-flag", "busybox"])).code).toBe(125);
  });
});

describe("bad input leaves nothing behind", () => {
  it.each([
    [["run", "--pull", "never", "no-such-image", "true"], /image not known/],
    [["run", "-u", "nobody-here", "busybox", "true"], /unable to find user nobody-here/],
    [["run", "-u", "99999", "busybox", "true"], /not mapped/],
    [["run", "busybox", "no-such-command"], /not found/],
    [["run", "Bad:Ref", "true"], /invalid reference format/],
  ])("%j", async (args, message) => {
    const before = containerDirs();
    const r = await tsrun(args as string[]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(containerDirs()).toEqual(before);
  });
});

describe("terminal and signals", () => {
  it("-it gives a pty of the container's own devpts, with TERM", async () => {
    const r = await shAsUser(`script -qec '"$TSRUN" run --rm -it busybox sh -c "tty; stty size; echo \\$TERM; exit 3"' /dev/null`);
    expect(r.stdout).toMatch(/\/dev\/pts\/0/);
    expect(r.stdout).toMatch(/xterm/);
    expect(r.code).toBe(3);
  });

  it("job control works in an interactive sh", async () => {
    // Typed at the prompt, as a person would: busybox ash asks the terminal for the cursor
    // position (ESC[6n) at every prompt and drops what is typed while it waits for the answer,
    // so each line goes in a moment after its prompt.
    const [cmd, ...args] = asUser(["script", "-qec", `"${env.cli}" run --rm -it busybox sh`, "/dev/null"]);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base, stdin: "pipe" });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    const prompts = (): number => out.split("# ").length - 1;
    const until = async (check: () => boolean): Promise<void> => {
      while (!check()) await new Promise((r) => setTimeout(r, 20));
    };
    const type = async (line: string): Promise<void> => {
      const before = prompts();
      await new Promise((r) => setTimeout(r, 300));
      child.stdin?.write(`${line}\n`);
      await until(() => prompts() > before);
    };
    await until(() => prompts() >= 1);
    await type("sleep 30 &");
    await type("jobs");
    await type("kill %1; wait; echo jobs-done");
    await new Promise((r) => setTimeout(r, 300));
    child.stdin?.write("exit 4\n");
    const r = await child;
    expect(out).toMatch(/\[1\]\+?\s+Running\s+sleep 30/);
    expect(out).toMatch(/Terminated\s+sleep 30/);
    expect(out).toContain("jobs-done");
    expect(r.exitCode).toBe(4);
  });

  it.each(["SIGTERM", "SIGINT", "SIGHUP"] as const)("%s sent to tsrun reaches the container process", async (signal) => {
    const trapped = signal.slice(3);
    const script = `trap "echo got-${trapped}; exit 42" ${trapped}; echo ready; while true; do sleep 0.1; done`;
    const [cmd, ...args] = asUser([env.cli, "run", "--rm", "busybox", "sh", "-c", script]);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base });
    await new Promise<void>((resolve) => {
      child.stdout?.on("data", (d: Buffer) => {
        if (d.toString().includes("ready")) resolve();
      });
    });
    // setpriv execs tsrun, so the child pid is tsrun itself.
    process.kill(child.pid as number, signal);
    const r = await child;
    expect(String(r.stdout)).toContain(`got-${trapped}`);
    expect(r.exitCode).toBe(42);
  });

  it("-it on a real terminal: its size at start and after a resize, ^C to the container, the terminal restored after", async () => {
    const r = await onPty(33, 100, [
      { expect: "# " },
      { send: "stty size\n" },
      { expect: "33 100" },
      { resize: [40, 120] },
      { sleep: 0.5 },
      { send: "stty size\n" },
      { expect: "40 120" },
      // ^C goes to the container's terminal and interrupts its foreground job (well before the
      // 20 s an expect waits), not tsrun.
      { send: "sleep 30\n" },
      { sleep: 0.5 },
      { send: "\u0003" },
      { expect: "# " },
      { send: "echo still-$((40 + 2))\n" },
      { expect: "still-42" },
      { send: "exit 3\n" },
      { expect: "rc=3" },
    ], '"$TSRUN" run --rm -it busybox sh; echo "rc=$?"; stty -a');
    expect(r.failed, r.output).toBeNull();
    // The host terminal is back in canonical mode with echo.
    expect(r.output).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(r.output).toMatch(/(^|\s)echo(\s|$)/m);
  });

  it("-it restores the terminal when the container cannot start", async () => {
    const r = await onPty(24, 80, [{ expect: "rc=127" }], '"$TSRUN" run --rm -it busybox no-such-command; echo "rc=$?"; stty -a');
    expect(r.failed, r.output).toBeNull();
    expect(r.output).toMatch(/(^|\s)icanon(\s|$)/m);
  });
});

describe("a user without subordinate ids", () => {
  it("gets a single-id map (root = the user) and one clear warning", async () => {
    if (!env.user) return; // needs root to create the user
    const name = "tsrun-nosub";
    try {
      execFileSync("id", ["-u", name], { stdio: "ignore" });
    } catch {
      execFileSync("useradd", ["-m", "-s", "/bin/sh", name]);
    }
    // Debian's useradd gives new users a range: take it away.
    for (const file of ["/etc/subuid", "/etc/subgid"]) {
      const lines = readFileSync(file, "utf8").split("\n");
      writeFileSync(file, lines.filter((l) => !l.startsWith(`${name}:`)).join("\n"));
    }
    const uid = Number(execFileSync("id", ["-u", name]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", name]).toString().trim());
    const home = scratchDir("nosub");
    chownSync(home, uid, gid);
    const run = (args: string[], extra: Record<string, string> = {}): ReturnType<typeof execa> =>
      execa("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", env.cli, ...args], {
        reject: false,
        extendEnv: false,
        env: { ...cliEnv(), HOME: home, TSRUN_ROOT: path.join(home, "store"), ...extra },
        cwd: home,
      });
    // The busybox image has files of uid 1000: refused without a range, as Podman does ...
    const refused = await run(["import", env.busyboxTar, "busybox"]);
    expect(refused.exitCode).toBe(125);
    expect(String(refused.stderr)).toMatch(/owned by uid 1000, but the user namespace only has uids 0-0/);
    // ... unless owners may be squashed (Podman's ignore_chown_errors).
    const imported = await run(["import", env.busyboxTar, "busybox"], { TSRUN_IGNORE_CHOWN_ERRORS: "true" });
    expect(imported.exitCode, String(imported.stderr)).toBe(0);
    expect(String(imported.stderr)).toMatch(/changed to root/);
    const r = await run(["run", "--rm", "busybox", "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/x && echo wrote"]);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const maps = String(r.stdout).trim().split("\n").map((l) => l.trim().split(/\s+/).join(" "));
    expect(maps.slice(0, 2)).toEqual([`0 ${uid} 1`, `0 ${gid} 1`]);
    expect(maps.slice(2)).toEqual(["0", "wrote"]);
    const warnings = String(r.stderr).split("\n").filter((l) => l.includes("warning"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/no range for uid \d+ in \/etc\/subuid/);
  });
});
