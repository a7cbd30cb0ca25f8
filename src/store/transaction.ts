// The last step of every operation that adds to the store (pull, load, import, commit): under
// the store lock, new layers are moved into place, new blobs published, and the image index
// saved last. Whatever went in through the transaction comes out again if a later step fails
// (a full disk while saving the index, a layer that went missing): the store is left as it was.
import type { Store } from "./store.js";
import type { ImageRecord } from "./images.js";
import type { LayerMeta } from "./layers.js";
import { DigestMismatchError, type PutOutcome } from "./blobs.js";
import { sha256 } from "./digest.js";
import { discardStaged } from "./atomic.js";

export class StoreTransaction {
  private readonly addedLayers: string[] = [];
  private readonly addedBlobs: string[] = [];

  constructor(readonly store: Store) {}

  /**
   * Moves a complete temporary layer dir into place. When the chain is in the store already (a
   * concurrent pull of the same layer) the temporary dir is dropped and theirs kept.
   */
  async commitLayer(tmp: string, meta: Omit<LayerMeta, "link">): Promise<void> {
    const layers = this.store.layers;
    if (layers.has(meta.chainId)) {
      await this.store.removeTree(tmp);
      return;
    }
    // A layer dir without layer.json under the final name (an older tsrun killed mid-commit).
    const stale = layers.detach(meta.chainId);
    if (stale) await this.store.removeTree(stale);
    layers.commit(tmp, meta);
    this.addedLayers.push(meta.chainId);
  }

  /** Stores small bytes (configs, manifests) as a blob, verified against expected when given. */
  putBlob(data: Buffer, expected?: string): string {
    const digest = checkedDigest(data, expected);
    this.noteBlob(digest, this.store.blobs.putHashed(data, digest));
    return digest;
  }

  /**
   * putBlob for several small blobs (an image's config and manifest), then saveImages with the
   * list indexFor makes from their digests (undefined: the index stays as it is), flushed in one
   * go (BlobStore.putHashedMany): the new index is written beside the blobs and fsynced right
   * after them. The blobs are renamed into place first, then afterBlobs runs, then the index
   * is: a crash in between leaves blobs nothing refers to, never an index naming a missing blob.
   */
  async putBlobsAndSaveImages(
    items: { data: Buffer; expected?: string }[],
    indexFor: (digests: string[]) => ImageRecord[] | undefined,
    afterBlobs?: () => void,
  ): Promise<string[]> {
    const hashed = items.map(({ data, expected }) => ({ data, digest: checkedDigest(data, expected) }));
    const digests = hashed.map((h) => h.digest);
    const images = indexFor(digests);
    const index = images ? this.store.images.stage(images) : undefined;
    let outcomes: PutOutcome[];
    try {
      outcomes = await this.store.blobs.putHashedMany(hashed, index ? [index] : []);
    } catch (err) {
      if (index) discardStaged([index]);
      throw err;
    }
    hashed.forEach(({ digest }, i) => this.noteBlob(digest, outcomes[i] ?? "present"));
    if (index) {
      try {
        afterBlobs?.();
        this.store.images.publish(index);
      } catch (err) {
        discardStaged([index]);
        throw err;
      }
    } else {
      afterBlobs?.();
    }
    return digests;
  }

  /** Remembers a blob this transaction added, for rollback. */
  private noteBlob(digest: string, outcome: PutOutcome): void {
    // A corrupt copy replaced by good bytes is a repair, not something to take back.
    if (outcome === "written") this.addedBlobs.push(digest);
  }

  /** Publishes a complete, verified file (staged blob, spilled archive member, packed tar). */
  publishBlob(file: string, digest: string): void {
    if (this.store.blobs.publish(file, digest)) this.addedBlobs.push(digest);
  }

  /** Saves the image index: the step that makes the new images exist. */
  saveImages(images: ImageRecord[]): void {
    this.store.images.save(images);
  }

  /** Takes out what this transaction added (call under the lock, after a failure). */
  async rollback(): Promise<void> {
    const doomed: string[] = [];
    for (const chainId of this.addedLayers.reverse()) {
      try {
        const dir = this.store.layers.detach(chainId);
        if (dir) doomed.push(dir);
      } catch {
        // Left for the next recovery: an unreferenced layer is garbage, not damage.
      }
    }
    for (const digest of this.addedBlobs) this.store.blobs.remove(digest);
    await this.store.removeTrees(doomed).catch(() => undefined);
  }
}

/** data's digest, refused when it is not the one expected. */
function checkedDigest(data: Buffer, expected: string | undefined): string {
  const digest = sha256(data);
  if (expected !== undefined && expected !== digest) throw new DigestMismatchError(`digest mismatch: expected ${expected}, got ${digest}`);
  return digest;
}
