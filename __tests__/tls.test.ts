/**
 * r2d1 over HTTPS, as against R2: the CLI talks TLS to a terminator in front of the rig's miniflare
 * (certificate made by openssl for 127.0.0.1, trusted through NODE_EXTRA_CA_CERTS), and a plain HTTP
 * forwarder beside it as the control. Over HTTPS the bodies of PutObject and UploadPart are sent as
 * UNSIGNED-PAYLOAD (TLS protects them; the manifest's SHA-256 is checked on pull); over HTTP they
 * stay signed. Either way what comes back is byte-identical.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createServer as createHttpServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashDir, r2OnlyEnv, randomFile, writeCheckpoint } from './helpers/checkpoints.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { faultScope } from './helpers/faultProxy.js';
import { rig, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;
const { tempDir } = faultScope('r2d1-tls-');
const servers: Server[] = [];
afterAll(() => servers.forEach((s) => s.close()));

interface Seen {
  method: string;
  url: string;
  payload: string;
}

/** Forwards every request to the rig unchanged (Host included: the signature covers it), recording its payload hash. */
async function forwarder(tls?: { key: Buffer; cert: Buffer }): Promise<{ endpoint: string; seen: Seen[] }> {
  const upstream = new URL(rig().url);
  const seen: Seen[] = [];
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', payload: String(req.headers['x-amz-content-sha256']) });
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  };
  const server = tls ? createHttpsServer(tls, handle) : createHttpServer(handle);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const scheme = tls ? 'https' : 'http';
  return { endpoint: `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}/cdn-cgi/local/r2/s3`, seen };
}

async function selfSignedCertificate(): Promise<{ key: Buffer; cert: Buffer; certPath: string }> {
  const dir = await tempDir();
  const [keyPath, certPath] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key: readFileSync(keyPath), cert: readFileSync(certPath), certPath };
}

/** x-amz-content-sha256 of the requests that carry an object's bytes (PUT of a whole object or a part). */
const bodyPayloads = (seen: Seen[]) => seen.filter((s) => s.method === 'PUT').map((s) => s.payload);

describe('over HTTPS', () => {
  it('ship and pull through TLS: part bodies go UNSIGNED-PAYLOAD, over plain HTTP they are signed; both land byte-identical', async () => {
    const tls = await selfSignedCertificate();
    const dir = await tempDir();
    // 20 MiB: a multipart upload of two 16 MiB parts.
    await writeCheckpoint(dir, 'ck', { epoch: 1, files: { 'model.bin': randomFile(20 * MiB + 5), 'config.json': '{"lr":0.1}' } });

    const results: Record<string, { payloads: string[]; identical: boolean }> = {};
    for (const scheme of ['https', 'http'] as const) {
      const { endpoint, seen } = await forwarder(scheme === 'https' ? tls : undefined);
      const env = cliEnv({ ...r2OnlyEnv(), R2D1_R2_ENDPOINT_URL: endpoint, NODE_EXTRA_CA_CERTS: tls.certPath });
      const job = uniqueJobId(`tls-${scheme}`);
      const shipped = await runCli(['ship', dir, '--job-id', job], { env, cwd: dir, timeoutMs: 60_000 });
      expect([scheme, shipped.code, shipped.stdout + shipped.stderr]).toEqual([scheme, 0, expect.stringContaining('shipped ck epoch 1')]);
      const payloads = bodyPayloads(seen);
      const cwd = await tempDir('r2d1-dest-');
      const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out'], { env, cwd, timeoutMs: 60_000 });
      expect([scheme, pulled.code]).toEqual([scheme, 0]);
      results[scheme] = { payloads, identical: JSON.stringify(await hashDir(join(cwd, 'out', 'ck'))) === JSON.stringify(await hashDir(join(dir, 'ck'))) };
      // Requests without a body (GET, list, create/complete) are signed over an empty or small payload either way.
      expect(seen.filter((s) => s.method === 'GET').every((s) => /^[0-9a-f]{64}$/.test(s.payload))).toBe(true);
    }
    // Two parts of model.bin, config.json, the manifest: four bodies each way.
    expect(results.https!.payloads).toEqual(Array(4).fill('UNSIGNED-PAYLOAD'));
    expect(results.http!.payloads).toHaveLength(4);
    expect(results.http!.payloads.every((p) => /^[0-9a-f]{64}$/.test(p))).toBe(true);
    expect([results.https!.identical, results.http!.identical]).toEqual([true, true]);
  });
});
