// A minimal streaming tar writer for image archives: regular files from memory or from a stream
// of known size, directories and symlinks, written with backpressure. Archive member names are
// ours (hex digests and fixed names), short enough for plain ustar headers.
import { once } from "node:events";
import { Header } from "tar";

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

export class TarWriter {
  /** Bytes written so far (the archive's size when finished). */
  written = 0;

  constructor(private readonly out: NodeJS.WritableStream) {}

  private async write(chunk: Buffer): Promise<void> {
    this.written += chunk.length;
    if (!this.out.write(chunk)) await once(this.out, "drain");
  }

  private header(name: string, type: "File" | "Directory" | "SymbolicLink", size: number, linkpath?: string): Buffer {
    const block = Buffer.alloc(BLOCK);
    // mtime 0 and root ownership, as containers/image writes: the same images give the same bytes.
    const header = new Header({
      path: name,
      type,
      size,
      mode: type === "File" ? 0o644 : type === "Directory" ? 0o755 : 0o777,
      uid: 0,
      gid: 0,
      uname: "",
      gname: "",
      mtime: new Date(0),
      ...(linkpath !== undefined ? { linkpath } : {}),
    });
    if (header.encode(block, 0)) throw new Error(`internal error: archive member name too long for a ustar header: ${name}`);
    return block;
  }

  private async pad(size: number): Promise<void> {
    const rest = size % BLOCK;
    if (rest !== 0) await this.write(ZEROS.subarray(0, BLOCK - rest));
  }

  async directory(name: string): Promise<void> {
    await this.write(this.header(name.endsWith("/") ? name : `${name}/`, "Directory", 0));
  }

  async symlink(name: string, target: string): Promise<void> {
    await this.write(this.header(name, "SymbolicLink", 0, target));
  }

  async file(name: string, data: Buffer): Promise<void> {
    await this.write(this.header(name, "File", data.length));
    if (data.length > 0) await this.write(data);
    await this.pad(data.length);
  }

  /**
   * A member whose size is known before its bytes arrive (the header comes first). Throws when
   * the stream delivers a different number of bytes: the archive would be corrupt.
   */
  async stream(name: string, size: number, chunks: AsyncIterable<Buffer>): Promise<void> {
    await this.write(this.header(name, "File", size));
    let got = 0;
    for await (const chunk of chunks) {
      got += chunk.length;
      if (got > size) throw new Error(`${name}: more than the ${size} bytes expected`);
      await this.write(chunk);
    }
    if (got !== size) throw new Error(`${name}: got ${got} bytes, expected ${size}`);
    await this.pad(size);
  }

  /** The end-of-archive marker (two zero blocks). The caller ends the output stream. */
  async finish(): Promise<void> {
    await this.write(ZEROS);
  }
}
