// `inspect`: images and containers as the Docker API shows them (docker image inspect, docker
// container inspect). Keys are in the order Docker's Go structs declare them, so `json` in a
// --format template and the plain JSON output read like Docker's; fields that Docker omits when
// empty are left out here too.
import path from "node:path";
import type { Store } from "../store/store.js";
import type { ImageRecord } from "../store/images.js";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { ContainerConfig, ImageConfig } from "./types.js";
import { familiarRepository, splitName } from "./reference.js";
import { maskedAndReadOnlyPaths, securityOf } from "../container/security/plan.js";
import { usernsText } from "../container/security/options.js";
import { inspectModes } from "../container/namespaces.js";
import { stateWord } from "../container/filters.js";

/** Docker's zero time, shown for a container that never started or never stopped. */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/** "docker.io/library/busybox:latest" -> "busybox:latest", as Docker lists RepoTags. */
export function familiarName(name: string): string {
  const at = name.indexOf("@");
  if (at >= 0) return `${familiarRepository(name.slice(0, at))}${name.slice(at)}`;
  const { repository, tag } = splitName(name);
  return tag ? `${familiarRepository(repository)}:${tag}` : familiarRepository(repository);
}

export function readImageConfig(store: Store, image: ImageRecord): ImageConfig {
  return JSON.parse(store.blobs.read(image.id).toString("utf8")) as ImageConfig;
}

/** The image's size as `images` shows it: every layer's uncompressed size. */
export function imageSize(image: ImageRecord): number {
  return image.layers.reduce((n, l) => n + l.size, 0);
}

/** The comment of an image: Docker's top-level one, else its newest history entry's. */
function imageComment(config: ImageConfig): string {
  if (typeof config.comment === "string") return config.comment;
  return config.history?.at(-1)?.comment ?? "";
}

/** The runtime config in Docker's key order (DockerOCIImageConfig: empty fields omitted). */
function imageRuntimeConfig(c: ContainerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const put = (key: string, value: unknown): void => {
    if (value === undefined || value === null || value === "") return;
    if (Array.isArray(value) && value.length === 0 && key !== "Cmd" && key !== "Entrypoint") return;
    if (typeof value === "object" && !Array.isArray(value) && Object.keys(value as object).length === 0) return;
    out[key] = value;
  };
  put("User", c.User);
  put("ExposedPorts", c.ExposedPorts);
  put("Env", c.Env);
  put("Entrypoint", c.Entrypoint);
  put("Cmd", c.Cmd);
  put("Volumes", c.Volumes);
  put("WorkingDir", c.WorkingDir);
  put("Labels", c.Labels);
  put("StopSignal", c.StopSignal);
  put("ArgsEscaped", c.ArgsEscaped || undefined);
  put("Healthcheck", c.Healthcheck);
  put("OnBuild", c.OnBuild);
  put("Shell", c.Shell);
  return out;
}

/** `docker image inspect` for one image. */
export function inspectImage(store: Store, image: ImageRecord): Record<string, unknown> {
  const config = readImageConfig(store, image);
  const layers = image.layers.map((l) => store.layers.diffDir(l.chainId));
  const graphData: Record<string, string> = {};
  if (layers.length > 1) graphData.LowerDir = layers.slice(0, -1).reverse().join(":");
  if (layers.length > 0) graphData.UpperDir = layers[layers.length - 1] as string;
  const out: Record<string, unknown> = {
    Id: image.id,
    RepoTags: image.names.map(familiarName),
    RepoDigests: image.repoDigests.map(familiarName),
    Parent: typeof config.parent === "string" ? config.parent : "",
    Comment: imageComment(config),
    Created: config.created ?? image.added,
    DockerVersion: typeof config.docker_version === "string" ? config.docker_version : "",
    Author: config.author ?? "",
    Config: imageRuntimeConfig(config.config ?? {}),
    Architecture: config.architecture,
  };
  if (config.variant) out.Variant = config.variant;
  out.Os = config.os;
  out.Size = imageSize(image);
  out.GraphDriver = { Data: graphData, Name: "overlay" };
  out.RootFS = { Type: "layers", Layers: config.rootfs.diff_ids };
  out.Metadata = { LastTagTime: ZERO_TIME };
  return out;
}

function orZero(time: string): string {
  return time || ZERO_TIME;
}

/** Docker's container Config (container.Config, in its key order). */
function containerRuntimeConfig(record: ContainerRecord, image: ImageConfig | undefined): Record<string, unknown> {
  const c = record.config;
  const imageConfig = image?.config ?? {};
  const out: Record<string, unknown> = {
    Hostname: c.hostname,
    Domainname: c.domainname ?? "",
    User: c.user,
    AttachStdin: c.openStdin,
    AttachStdout: true,
    AttachStderr: true,
  };
  const exposed = { ...(imageConfig.ExposedPorts ?? {}), ...Object.fromEntries((c.exposedPorts ?? []).map((p) => [p, {}])) };
  if (Object.keys(exposed).length > 0) out.ExposedPorts = exposed;
  out.Tty = c.tty;
  out.OpenStdin = c.openStdin;
  out.StdinOnce = c.openStdin;
  out.Env = c.env;
  out.Cmd = c.cmd;
  if (c.healthcheck) out.Healthcheck = c.healthcheck;
  out.Image = familiarName(record.imageName);
  out.Volumes = imageConfig.Volumes && Object.keys(imageConfig.Volumes).length > 0 ? imageConfig.Volumes : null;
  out.WorkingDir = c.workingDir;
  out.Entrypoint = c.entrypoint;
  out.OnBuild = imageConfig.OnBuild ?? null;
  out.Labels = c.labels;
  if (c.stopSignal) out.StopSignal = c.stopSignal;
  if (c.stopTimeout !== undefined) out.StopTimeout = c.stopTimeout;
  return out;
}

/** `docker container inspect` for one container. */
export function inspectContainer(containers: Containers, record: ContainerRecord): Record<string, unknown> {
  const dir = containers.records.containerDir(record.id);
  let image: ImageConfig | undefined;
  try {
    const stored = containers.store.images.list().find((i) => i.id === record.image);
    if (stored) image = readImageConfig(containers.store, stored);
  } catch {
    // The image went away: inspect still shows the container.
  }
  const s = record.state;
  const state: Record<string, unknown> = {
    Status: stateWord(record),
    Running: s.status === "running",
    Paused: s.paused ?? false,
    Restarting: s.status === "running" && (s.restarting ?? false),
    OOMKilled: false,
    Dead: false,
    Pid: s.status === "running" ? s.pid : 0,
    ExitCode: s.exitCode,
    Error: s.error,
    StartedAt: orZero(s.startedAt),
    FinishedAt: orZero(s.finishedAt),
  };
  if (s.health) state.Health = s.health;
  const h = record.hostConfig;
  const sec = securityOf(record);
  const fsConfinement = maskedAndReadOnlyPaths(sec);
  const mounts = h.mounts ?? [];
  const binds = mounts.filter((m) => m.type !== "tmpfs").map((m) => `${m.source}:${m.target}${m.readOnly ? ":ro" : ""}`);
  const portBindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of h.portBindings ?? []) {
    const key = `${p.containerPort}/${p.protocol}`;
    (portBindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) });
  }
  const tmpfs: Record<string, string> = {};
  for (const m of mounts) if (m.type === "tmpfs") tmpfs[m.target] = m.tmpfsOptions ?? "";
  const lowers = [...record.layers].reverse().map((c) => containers.store.layers.diffDir(c));
  return {
    Id: record.id,
    Created: record.created,
    Path: record.path,
    Args: record.args,
    State: state,
    Image: record.image,
    ResolvConfPath: path.join(dir, "resolv.conf"),
    HostnamePath: path.join(dir, "hostname"),
    HostsPath: path.join(dir, "hosts"),
    LogPath: path.join(dir, "ctr.log"),
    Name: `/${record.name}`,
    RestartCount: s.restartCount ?? 0,
    Driver: "overlay",
    Platform: "linux",
    MountLabel: "",
    ProcessLabel: "",
    AppArmorProfile: "",
    ExecIDs: null,
    HostConfig: {
      Binds: binds.length > 0 ? binds : null,
      ContainerIDFile: "",
      LogConfig: { Type: h.logDriver ?? "json-file", Config: h.logOptions ?? {} },
      NetworkMode: h.networkMode,
      ...inspectModes(h),
      PortBindings: portBindings,
      RestartPolicy: { Name: h.restartPolicy?.name ?? "no", MaximumRetryCount: h.restartPolicy?.maximumRetryCount ?? 0 },
      AutoRemove: h.autoRemove,
      Init: h.init !== undefined,
      GroupAdd: h.groupAdd ?? null,
      ShmSize: h.shmSize ?? 64 * 1024 * 1024,
      Sysctls: h.sysctls ?? null,
      OomScoreAdj: h.oomScoreAdj ?? 0,
      CgroupnsMode: h.cgroupnsMode ?? "private",
      ...(h.annotations ? { Annotations: h.annotations } : {}),
      Dns: h.dns ?? [],
      DnsSearch: h.dnsSearch ?? [],
      DnsOptions: h.dnsOptions ?? [],
      Devices: (h.devices ?? []).map((d) => ({ PathOnHost: d.pathOnHost, PathInContainer: d.pathInContainer, CgroupPermissions: d.cgroupPermissions })),
      VolumeDriver: "",
      VolumesFrom: null,
      CapAdd: sec.capAdd.length > 0 ? sec.capAdd : null,
      CapDrop: sec.capDrop.length > 0 ? sec.capDrop : null,
      Privileged: sec.privileged,
      SecurityOpt: sec.securityOpt.length > 0 ? sec.securityOpt : null,
      UsernsMode: usernsText(sec.userns),
      Ulimits: sec.ulimits.length > 0 ? sec.ulimits.map((u) => ({ Name: u.Name, Hard: u.Hard, Soft: u.Soft })) : null,
      Memory: sec.resources.memory ?? 0,
      MemorySwap: sec.resources.memorySwap ?? 0,
      MemoryReservation: sec.resources.memoryReservation ?? 0,
      NanoCpus: sec.resources.nanoCpus ?? 0,
      CpuShares: sec.resources.cpuShares ?? 0,
      CpuPeriod: sec.resources.cpuPeriod ?? 0,
      CpuQuota: sec.resources.cpuQuota ?? 0,
      CpusetCpus: sec.resources.cpusetCpus ?? "",
      CpusetMems: sec.resources.cpusetMems ?? "",
      PidsLimit: sec.resources.pidsLimit ?? null,
      MaskedPaths: fsConfinement.maskedPaths,
      ReadonlyPaths: fsConfinement.readOnlyPaths,
      PublishAllPorts: false,
      ReadonlyRootfs: h.readOnly,
      ...(Object.keys(tmpfs).length > 0 ? { Tmpfs: tmpfs } : {}),
    },
    GraphDriver: {
      Data: {
        LowerDir: lowers.join(":"),
        MergedDir: path.join(dir, "rootfs"),
        UpperDir: path.join(dir, "upper"),
        WorkDir: path.join(dir, "work"),
      },
      Name: "overlay",
    },
    Mounts: mounts.map((m) => {
      const volume = m.type === "volume";
      return {
        Type: m.type,
        ...(volume ? { Name: m.source } : {}),
        Source: volume ? containers.volumes.dataDir(m.source) : m.source,
        Destination: m.target,
        ...(volume ? { Driver: "local" } : {}),
        Mode: "",
        RW: !m.readOnly,
        Propagation: m.type === "bind" ? "rprivate" : "",
      };
    }),
    Config: containerRuntimeConfig(record, image),
    NetworkSettings: {
      Bridge: "",
      SandboxID: "",
      SandboxKey: s.status === "running" ? `/proc/${s.pid}/ns/net` : "",
      // What is bound while the container runs (the address the forwarder listens on), as Docker shows it.
      Ports:
        s.status === "running"
          ? Object.fromEntries(Object.entries(portBindings).map(([k, list]) => [k, list.map((b) => ({ HostIp: b.HostIp || "0.0.0.0", HostPort: b.HostPort }))]))
          : {},
      HairpinMode: false,
      LinkLocalIPv6Address: "",
      LinkLocalIPv6PrefixLen: 0,
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      // Docker fills these top-level fields only for its default bridge, whose address the host
      // can reach. The private network's address (slirp4netns's or pasta's) cannot be reached
      // from the host, so they stay empty, as with rootless Podman: scripts reading
      // {{.NetworkSettings.IPAddress}} get "" rather than "<no value>".
      EndpointID: "",
      Gateway: "",
      GlobalIPv6Address: "",
      GlobalIPv6PrefixLen: 0,
      IPAddress: "",
      IPPrefixLen: 0,
      IPv6Gateway: "",
      MacAddress: "",
      Networks: Object.fromEntries(
        Object.entries(h.networks ?? {}).map(([name, e]) => [
          name,
          {
            IPAMConfig: null,
            Links: e.links.length > 0 ? e.links : null,
            Aliases: e.aliases.length > 0 ? e.aliases : null,
            NetworkID: e.networkId,
            EndpointID: "",
            Gateway: e.gateway,
            IPAddress: e.ipAddress,
            IPPrefixLen: e.prefixLen,
            IPv6Gateway: "",
            GlobalIPv6Address: "",
            GlobalIPv6PrefixLen: 0,
            MacAddress: e.macAddress,
          },
        ]),
      ),
    },
  };
}
