import { run } from '../postImpl.js';

await run();
