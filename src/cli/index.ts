#!/usr/bin/env node
import { main } from './main.js';

const code = await main(process.argv.slice(2));
// Exit once stdout has drained: keep-alive sockets or a stray timer must not hold the CLI open.
process.stdout.write('', () => process.exit(code));
