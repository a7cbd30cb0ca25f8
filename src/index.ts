// The public library API: everything the CLI does, as typed functions other Node programs can
// import. The CLI (src/cli) is a thin layer over this module.

export { Store } from "./store/store.js";
export { Containers, type CreateOptions } from "./container/run.js";
export type { SecurityFlags, SecurityConfig, Ulimit, Resources } from "./container/security/options.js";
export type { UsernsMode } from "./userns.js";
export type { ContainerRecord, ContainerState, ContainerStatus } from "./container/records.js";
export type { ImageRecord, LayerRecord } from "./store/images.js";
export type { ImageConfig, ContainerConfig, Manifest, Descriptor } from "./image/types.js";
export { parseReference, normaliseName, formatReference, familiarRepository, ReferenceError } from "./image/reference.js";
export { mergeCommand, mergeEnv, parseUserSpec, resolveUser } from "./container/spec.js";
export { TsrunError, NotFoundError } from "./errors.js";
export type { CommitOptions } from "./image/commit.js";
export type { ExportOptions } from "./image/export.js";
export type { Change, ChangeKind } from "./store/pack.js";
// Paths in results (diff's changes) keep bytes that are not valid UTF-8 as lone surrogates.
export { decodeFileName, encodeFileName } from "./store/file-names.js";
export type { ContainerSize } from "./container/size.js";
export type { ContainerStats } from "./container/stats.js";
export { login, logout, type LoginOptions } from "./image/registry/login.js";
export type { PullOptions, PullResult } from "./image/registry/pull.js";
export type { PushOptions, PushResult } from "./image/registry/push.js";
export type { TransferListener, BlobOutcome } from "./image/registry/progress.js";
export { RegistryError } from "./image/registry/client.js";
export type { SaveOptions, ArchiveFormat } from "./image/archive/save.js";
export type { LoadOptions, LoadResult, LoadedImage } from "./image/archive/load.js";
export type { BuildOptions } from "./build/builder.js";
export { BuildError, BuildCancelledError } from "./build/errors.js";
export type { CheckOptions, CheckReport, Finding, FindingKind } from "./system/check.js";
export type { DiskUsage, UsageRow, ImageUsage, ContainerUsage, VolumeUsage } from "./system/df.js";
export type { ContainerPruneResult, SystemPruneOptions, SystemPruneResult } from "./system/prune.js";
export type { SystemInfo, IdMap } from "./system/info.js";
export type { VersionInfo } from "./system/version.js";
export { stopContainer, restartContainer, killContainer, pauseContainer, unpauseContainer, removeContainer, renameContainer, waitContainer, readLogs, type LogRecord, type LogOptions } from "./container/lifecycle.js";
export { updateContainer, type UpdateOptions } from "./container/update.js";
export { signalNumber } from "./format/signal.js";
export { Tsrun, type TsrunOptions, type ImageSummary } from "./tsrun.js";
export type { ImportOptions } from "./image/import.js";
