// What pull and push report while they work. The library only emits these events; the CLI
// decides how they look (src/cli/registry.ts), and library users may pass their own listener.

export type BlobOutcome = "done" | "skipped: already exists" | "mounted";

export interface TransferListener {
  /** A free-form step ("Trying to pull ...", "Writing manifest to image destination"). */
  message(text: string): void;
  /** A blob transfer begins (size from the descriptor). */
  blobStart(kind: "blob" | "config", digest: string, size: number): void;
  /** Bytes of a blob moved so far (cumulative). */
  blobProgress(digest: string, bytes: number): void;
  blobDone(digest: string, outcome: BlobOutcome): void;
  /** All blob lines are final (a terminal display stops redrawing). */
  finish(): void;
}

export const silentListener: TransferListener = {
  message: () => undefined,
  blobStart: () => undefined,
  blobProgress: () => undefined,
  blobDone: () => undefined,
  finish: () => undefined,
};
