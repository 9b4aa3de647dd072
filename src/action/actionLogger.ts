import * as core from '@actions/core';
import type { Logger } from '../core/logger.js';
import { inActionTerms } from './inputHelper.js';

/** Core's logger on the runner's log commands (warnings and errors become annotations). */
export const actionLogger: Logger = {
  debug: (m) => core.debug(m),
  info: (m) => core.info(m),
  warn: (m) => core.warning(inActionTerms(m)),
  error: (m) => core.error(inActionTerms(m)),
};
