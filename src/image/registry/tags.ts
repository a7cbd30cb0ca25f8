// A repository's tags, as `pull --all-tags` needs them: GET /v2/NAME/tags/list from the
// registry (registries.conf's location applied), following the Link header's next pages
// (distribution's pagination). A short name is resolved as pull resolves it; the first
// candidate whose registry answers is the repository.
import { TsrunError } from "../../errors.js";
import { hasRegistry, parseReference, ReferenceError, repositoryName, type Reference } from "../reference.js";
import { readBody, RegistryError } from "./client.js";
import { BlockedRegistryError, loadRegistriesConfig, pullSources } from "./registries-conf.js";
import { resolveShortName } from "./short-names.js";
import { SourceChain } from "./source-chain.js";

export interface ListTagsOptions {
  /** NAME without a tag or digest. */
  reference: string;
  tlsVerify?: boolean | undefined;
  authFile?: string | undefined;
}

/** Pages of tags followed at most: a registry that links forever cannot keep a pull going. */
const MAX_PAGES = 100;

/** The repository (fully qualified) and its tags, in the registry's order. */
export async function listTags(opts: ListTagsOptions): Promise<{ repository: string; tags: string[] }> {
  const input = opts.reference.replace(/^docker:\/\//, "");
  let candidates: Reference[];
  const conf = loadRegistriesConfig(process.env, !hasRegistry(input));
  try {
    const ref = parseReference(input);
    if (ref.digest || input.lastIndexOf(":") > input.lastIndexOf("/")) throw new TsrunError(`pull ${input}: a tag or digest cannot be used with --all-tags`);
    candidates = (await resolveShortName(input, conf.shortNames)).candidates;
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(`pull ${input}: ${err.message}`);
    throw err;
  }
  const failures: string[] = [];
  for (const candidate of candidates) {
    const context = `pull ${repositoryName(candidate)}: listing tags`;
    // The registry itself (mirrors may hold only some tags), with its location applied; a
    // blocked one is this candidate's failure, as in a pull.
    let sources;
    try {
      sources = pullSources(conf.entries, candidate).filter((s) => !s.mirror);
    } catch (err) {
      if (candidates.length === 1 || !(err instanceof BlockedRegistryError)) throw err;
      failures.push(err.message);
      continue;
    }
    const chain = new SourceChain(sources, opts);
    try {
      const tags = await chain.openFirst(context, async ({ client, path }) => {
        const all: string[] = [];
        let next: string | URL = `${path}/tags/list`;
        for (let page = 0; page < MAX_PAGES; page++) {
          const res = await client.request("GET", next, { context });
          const body = (await readBody(res.body, 4 << 20, `${context}: answer`)).toString("utf8");
          let doc: { tags?: unknown };
          try {
            doc = JSON.parse(body) as { tags?: unknown };
          } catch (err) {
            throw new RegistryError(`${context}: the answer is not valid JSON: ${(err as Error).message}`);
          }
          if (doc.tags !== null && doc.tags !== undefined && (!Array.isArray(doc.tags) || doc.tags.some((t) => typeof t !== "string"))) {
            throw new RegistryError(`${context}: the answer's "tags" is not a list of names`);
          }
          all.push(...((doc.tags as string[] | null | undefined) ?? []));
          const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(String(res.headers.link ?? ""))?.[1];
          if (!link) return all;
          next = new URL(link, res.url);
        }
        throw new RegistryError(`${context}: more than ${MAX_PAGES} pages of tags`);
      });
      return { repository: repositoryName(candidate), tags: tags.filter((t) => /^[\w][\w.-]{0,127}$/.test(t)) };
    } catch (err) {
      if (candidates.length === 1 || !(err instanceof RegistryError)) throw err;
      failures.push(err.message);
    } finally {
      chain.close();
    }
  }
  throw new RegistryError(`pull ${input}: no candidate could be listed: ${failures.join("; ")}`);
}
