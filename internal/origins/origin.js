// Node.js's http module as a logging origin (origins.Node): argv[2] is the
// log file; the port it listens on is printed as the first line.
'use strict';
const http = require('http');
const fs = require('fs');

const log = fs.openSync(process.argv[2], 'a');
const write = (e) => fs.writeSync(log, JSON.stringify(e) + '\n');

const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => {
    const h = req.headers;
    const saw = ['node', h['x-request-id'] || '', req.method, h.host || '', req.url].join('|');
    const path = req.url.split('?')[0];
    let status = 200;
    if (path.endsWith('.204')) status = 204;
    else if (path.endsWith('.304')) status = 304;
    else if (path.endsWith('.103')) res.writeEarlyHints({ link: '</early>; rel=preload' });
    write({ method: req.method, target: req.url, host: h.host || '', id: h['x-request-id'] || '',
      xff: h['x-forwarded-for'] || '', body: String(n), status: String(status) });
    res.writeHead(status, { 'X-Saw': saw, 'Content-Type': 'text/plain' });
    res.end(status === 200 ? saw + '\n' : undefined);
  });
  req.on('aborted', () => {
    const h = req.headers;
    write({ method: req.method, target: req.url, host: h.host || '', id: h['x-request-id'] || '',
      xff: h['x-forwarded-for'] || '', body: '-1', status: '0' });
  });
});
// Bytes node cannot parse as a request are logged too: an origin that saw
// them was sent something no decided request accounts for.
server.on('clientError', (err, socket) => {
  write({ method: '', target: '', host: '', id: '', xff: '', body: '-1', status: '400', error: err.code });
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
});
server.listen(0, '127.0.0.1', () => { process.stdout.write(server.address().port + '\n'); });
