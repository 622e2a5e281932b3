import { describe, expect, it } from 'vitest';
import { lastLines, runToEnd } from './child.ts';

describe('runToEnd', () => {
  it('resolves when the child exits with 0', async () => {
    await expect(runToEnd(process.execPath, ['-e', 'process.exit(0)'])).resolves.toBeUndefined();
  });

  it("quotes the end of a failed child's stderr with its exit code", async () => {
    const script = [
      'for (let i = 1; i <= 8; i++) console.error("line " + i);',
      'console.log("to stdout, not quoted");',
      'console.error("ERROR: the reason");',
      'process.exit(3);',
    ].join('\n');
    const err = await runToEnd(process.execPath, ['-e', script]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(
      /exited with code 3; its stderr ended: line 5 \| line 6 \| line 7 \| line 8 \| ERROR: the reason$/,
    );
    expect(err?.message.split('its stderr ended:')[1]).not.toContain('stdout');
  });

  it('names a signal, and a command that could not start', async () => {
    await expect(
      runToEnd(process.execPath, ['-e', 'process.kill(process.pid, "SIGTERM")']),
    ).rejects.toThrow(/was killed by SIGTERM$/);
    await expect(runToEnd('/nonexistent/command', [])).rejects.toThrow(
      /`\/nonexistent\/command` could not run: .*ENOENT/,
    );
  });
});

describe('lastLines', () => {
  it('keeps the last non-empty lines, trimmed', () => {
    expect(lastLines('a\n\n  b  \r\nc\n', 2)).toBe('b | c');
    expect(lastLines('', 5)).toBe('');
  });
});
