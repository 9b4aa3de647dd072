#!/usr/bin/env node
import { main } from './main.js';

// r2d1 supports Node 20 (engines); the SDK's notice about its own future Node 22 floor is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const code = await main(process.argv.slice(2));
// Exit once stdout has drained: keep-alive sockets or a stray timer must not hold the CLI open.
process.stdout.write('', () => process.exit(code));
