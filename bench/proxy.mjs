#!/usr/bin/env node
/**
 * A TCP proxy that holds every chunk for DELAY ms in each direction: WAN-like latency on loopback
 * (this kernel has no netem). Bandwidth is limited separately (tc tbf in the network namespace).
 *
 *   node bench/proxy.mjs LISTEN_PORT TARGET_PORT DELAY_MS     (both on 127.0.0.1)
 *
 * Prints "proxy ready" on stdout once listening. Order is preserved (same delay for every chunk of a
 * direction); a direction holding more than HIGH_WATER bytes pauses its source until it drains, so
 * memory stays bounded whatever the bandwidth-delay product.
 */
import net from 'node:net';

const [listenPort, targetPort, delayMs] = process.argv.slice(2).map(Number);
if (!listenPort || !targetPort || !(delayMs >= 0)) {
  console.error('usage: node bench/proxy.mjs LISTEN_PORT TARGET_PORT DELAY_MS');
  process.exit(2);
}
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 2 * 1024 * 1024;

function delayedPipe(src, dst) {
  let pending = 0;
  src.on('data', (chunk) => {
    pending += chunk.length;
    if (pending > HIGH_WATER) src.pause();
    setTimeout(() => {
      if (dst.destroyed) return;
      dst.write(chunk, () => {
        pending -= chunk.length;
        if (pending < LOW_WATER && src.isPaused()) src.resume();
      });
    }, delayMs);
  });
  src.on('end', () => setTimeout(() => dst.end(), delayMs));
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: '127.0.0.1', port: targetPort, noDelay: true });
  delayedPipe(client, upstream);
  delayedPipe(upstream, client);
  const kill = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', kill);
  upstream.on('error', kill);
  client.on('close', () => setTimeout(() => upstream.destroy(), delayMs * 2 + 10));
  upstream.on('close', () => setTimeout(() => client.destroy(), delayMs * 2 + 10));
});
server.listen(listenPort, '127.0.0.1', () => console.log('proxy ready'));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
