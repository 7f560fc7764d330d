// net.connect({localAddress: '127.0.0.1'}), N times over three echo servers, one line echoed each.
const net = require('net');
const [n, hold] = [Number(process.argv[2]), Number(process.argv[3])];
let ok = 0, done = 0;
const errs = {}, socks = [];
function finish() {
  if (++done < n) return;
  setTimeout(() => {
    console.log(`result ok=${ok} fail=${n - ok}`);
    console.log('errors ' + (Object.entries(errs).map(([e, c]) => `${c} ${e}`).join(' ') || 'none'));
    socks.forEach((s) => s.destroy());
  }, hold * 1000);
}
function one(i) {
  if (i >= n) return;
  const s = net.connect({ host: `127.0.0.${2 + (i % 3)}`, port: 7, localAddress: '127.0.0.1' });
  let seen = false;
  s.on('connect', () => s.write('ping\n'));
  s.on('data', (d) => {
    if (!seen && d.toString() === 'ping\n') { seen = true; ok++; socks.push(s); finish(); one(i + 1); }
  });
  s.on('error', (e) => { errs[e.message] = (errs[e.message] || 0) + 1; if (!seen) { seen = true; finish(); one(i + 1); } });
}
one(0);
