import { freePort, startProcess, type StartedProcess } from './processes.js';

/** What Prism prints once it serves, with its address. */
export const PRISM_LISTENING = /Prism is listening on (http:\/\/\S+)/;

/** Starts `npm run mock` on a free port of 127.0.0.1; resolves with the mock's URL once it serves. */
export async function startMock(): Promise<{ mock: StartedProcess; url: string; port: number }> {
  const port = await freePort();
  const mock = await startProcess('npm', ['run', 'mock'], {
    env: { ...process.env, MOCK_PORT: String(port), MOCK_HOST: '127.0.0.1' },
    ready: PRISM_LISTENING,
  });
  return { mock, url: mock.readyMatch![1], port };
}
