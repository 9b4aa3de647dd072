import * as core from '@actions/core';
import { formatBytes, type ShipReport } from '../core/courier.js';

/** Prints the flush report and writes it as a job summary table. */
export async function publishReport(report: ShipReport, heading: string): Promise<void> {
  for (const s of report.shipped) core.info(`shipped ${s.name} epoch ${s.epoch}: ${s.files} files, ${formatBytes(s.bytes)} in ${s.seconds.toFixed(1)}s → ${s.key}`);
  for (const f of report.failed) core.error(`NOT shipped: ${f.name}${f.epoch !== undefined ? ` epoch ${f.epoch}` : ''}: ${f.reason}`);
  for (const name of report.d1Pending) core.warning(`D1 row for ${name} not written (the checkpoint is committed in R2)`);

  const summary = core.summary.addHeading(heading, 3);
  if (report.shipped.length > 0) {
    summary.addTable([
      [
        { data: 'checkpoint', header: true },
        { data: 'epoch', header: true },
        { data: 'size', header: true },
        { data: 'duration', header: true },
        { data: 'R2 key', header: true },
      ],
      ...report.shipped.map((s) => [s.name, String(s.epoch), formatBytes(s.bytes), `${s.seconds.toFixed(1)} s`, `<code>${s.key}</code>`]),
    ]);
  } else {
    summary.addRaw('No checkpoint needed shipping.', true);
  }
  if (report.failed.length > 0) {
    summary.addRaw(`<strong>${report.failed.length} checkpoint(s) NOT shipped:</strong>`, true);
    summary.addList(report.failed.map((f) => `${f.name}${f.epoch !== undefined ? ` (epoch ${f.epoch})` : ''}: ${f.reason}`));
  }
  if (report.d1Pending.length > 0) summary.addRaw(`D1 rows pending for: ${report.d1Pending.join(', ')} (data committed in R2).`, true);
  await summary.write();
}
