import { run } from '../mainImpl.js';

await run();
