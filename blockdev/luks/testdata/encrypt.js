// Encrypts a file as dm-crypt sectors with Node's OpenSSL, an implementation
// independent of the Go code under test.
// usage: node encrypt.js SPEC KEYHEX SECTORSIZE FIRSTIV IN OUT OUTOFFSET
//   SPEC: aes-xts-plain64 | aes-xts-plain | aes-cbc-essiv:sha256 | aes-cbc-plain64
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const [spec, keyHex, ssArg, ivArg, inPath, outPath, outOffArg] = process.argv.slice(2);
const key = Buffer.from(keyHex, 'hex');
const ss = parseInt(ssArg, 10);
let iv = BigInt(ivArg);
const data = fs.readFileSync(inPath);
if (data.length % ss !== 0) throw new Error('input not a whole number of sectors');
const out = Buffer.alloc(data.length);
const bits = { 16: 128, 24: 192, 32: 256 };
let essivKey = null;
if (spec === 'aes-cbc-essiv:sha256') essivKey = crypto.createHash('sha256').update(key).digest();
for (let off = 0; off < data.length; off += ss) {
  const ivb = Buffer.alloc(16);
  let n = iv;
  if (spec === 'aes-xts-plain') n &= 0xffffffffn;
  ivb.writeBigUInt64LE(n, 0);
  let c;
  if (spec.startsWith('aes-xts-')) {
    c = crypto.createCipheriv('aes-' + bits[key.length / 2] + '-xts', key, ivb);
  } else if (spec === 'aes-cbc-essiv:sha256') {
    const e = crypto.createCipheriv('aes-256-ecb', essivKey, null);
    e.setAutoPadding(false);
    const realIV = e.update(ivb);
    c = crypto.createCipheriv('aes-' + bits[key.length] + '-cbc', key, realIV);
  } else if (spec === 'aes-cbc-plain64') {
    c = crypto.createCipheriv('aes-' + bits[key.length] + '-cbc', key, ivb);
  } else {
    throw new Error('unknown spec ' + spec);
  }
  c.setAutoPadding(false);
  const enc = Buffer.concat([c.update(data.subarray(off, off + ss)), c.final()]);
  enc.copy(out, off);
  iv += BigInt(ss / 512);
}
const fd = fs.openSync(outPath, 'r+');
fs.writeSync(fd, out, 0, out.length, parseInt(outOffArg, 10));
fs.closeSync(fd);
