// A tiny static server for the web phone: phone.html at /, phone.js, and
// jssip.bundle.js (built in memory from node_modules by bundle.mjs).
//
//   node serve.mjs [PORT]     serves on 127.0.0.1:PORT (default 8089)
//   import { startServer }    what drive.mjs uses (port 0: any free one)
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleJsSIP } from './bundle.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export function startServer(port = 0, host = '127.0.0.1') {
  const bundle = bundleJsSIP();
  const files = {
    '/': ['phone.html', 'text/html; charset=utf-8'],
    '/phone.html': ['phone.html', 'text/html; charset=utf-8'],
    '/phone.js': ['phone.js', 'text/javascript; charset=utf-8'],
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    let body;
    let type;
    if (path === '/jssip.bundle.js') {
      [body, type] = [bundle, 'text/javascript; charset=utf-8'];
    } else if (path === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    } else if (files[path]) {
      body = readFileSync(join(here, files[path][0]));
      type = files[path][1];
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      resolve({
        url: `http://${a.address}:${a.port}/`,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = Number(process.argv[2] || 8089);
  const { url } = await startServer(port);
  console.log(`web phone on ${url}?ws=ws://127.0.0.1:5066&user=alice&password=secret&domain=127.0.0.1`);
}
