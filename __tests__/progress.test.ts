import { ProgressMeter } from '../src/cli/progress.js';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: () => string } {
  const chunks: string[] = [];
  return { isTTY, write: (chunk: string) => chunks.push(chunk) > 0, text: () => chunks.join('') } as unknown as NodeJS.WriteStream & {
    text: () => string;
  };
}

describe('ProgressMeter (CLI progress)', () => {
  it('on a terminal shows bytes, rate and an ETA once the total is planned, and clears its line when done', () => {
    const stream = fakeStream(true);
    const meter = new ProgressMeter('pull', stream);
    meter.plan(4 * 1024 * 1024);
    meter.add(1024 * 1024);
    const line = stream.text();
    expect(line).toMatch(/^\r\x1b\[2Kpull: 1\.0 MiB at [\d.]+ \w+\/s, ETA \d+s$/);
    meter.done();
    expect(stream.text().endsWith('\r\x1b[2K')).toBe(true);
  });

  it('writes nothing when stderr is not a terminal (plain log lines only)', () => {
    const stream = fakeStream(false);
    const meter = new ProgressMeter('ship', stream);
    meter.plan(100);
    meter.add(50);
    meter.done();
    expect(stream.text()).toBe('');
  });
});
