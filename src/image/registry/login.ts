// `login` and `logout`: check the credentials against the registry, then keep them in the auth file.
import { TsrunError } from "../../errors.js";
import { normaliseRegistryKey, removeAllCredentials, removeCredentials, storeCredentials, type Credentials } from "./auth.js";
import { RegistryClient } from "./client.js";
import { findRegistry, loadRegistriesConf } from "./registries-conf.js";

export interface LoginOptions {
  tlsVerify?: boolean | undefined;
  authFile?: string | undefined;
}

/** The registry host from what a user may type: "host", "host:port", "https://host/v2/". */
export function registryHost(text: string): string {
  const host = normaliseRegistryKey(text.trim());
  if (!/^[a-zA-Z0-9.-]+(?::\d+)?$|^\[[a-fA-F0-9:]+\](?::\d+)?$/.test(host)) throw new TsrunError(`invalid registry "${text}"`);
  return host;
}

/** Verifies the credentials (the registry must accept them) and stores them. Returns the file or helper that holds them. */
export async function login(registry: string, creds: Credentials, opts: LoginOptions = {}): Promise<string> {
  const host = registryHost(registry);
  if (creds.username === "") throw new TsrunError("login: the username is empty");
  if (creds.password === "") throw new TsrunError("login: the password is empty");
  if (creds.username.includes(":")) throw new TsrunError("login: a username cannot contain ':'");
  // An insecure registry of registries.conf is logged in to as Podman does: without TLS verification.
  const insecure = findRegistry(loadRegistriesConf(), { domain: host, path: "" })?.insecure ?? false;
  const client = new RegistryClient(host, { tlsVerify: opts.tlsVerify ?? !insecure, credentials: creds });
  let identityToken: string | undefined;
  try {
    ({ identityToken } = await client.checkLogin());
  } finally {
    client.close();
  }
  // As docker login: a token server that hands out a refresh token gets it back next time, not the password.
  return storeCredentials(host, identityToken ? { username: creds.username, password: "", identityToken } : creds, opts.authFile);
}

/** Removes stored credentials; throws when there were none for that registry. */
export function logout(registry: string | undefined, opts: { all?: boolean; authFile?: string | undefined } = {}): void {
  if (opts.all) {
    removeAllCredentials(opts.authFile);
    return;
  }
  if (!registry) throw new TsrunError("logout: give a registry, or --all");
  const host = registryHost(registry);
  if (!removeCredentials(host, opts.authFile)) throw new TsrunError(`not logged into ${host}`);
}
