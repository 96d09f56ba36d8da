import http from 'node:http';

/** An HTTP answer as a probe sees it. */
export interface ProbeAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to a health check listener at `address` (host:port), on a connection of its own. */
export function probe(address: string, path: string, method = 'GET'): Promise<ProbeAnswer> {
  const url = new URL(`http://${address}${path}`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path: url.pathname + url.search, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The JSON body of a health answer, checked to be `{"<name>": {…}}` (SPIRE's shape). */
export function healthBody(answer: ProbeAnswer, name: string): Record<string, unknown> {
  const parsed = JSON.parse(answer.body) as Record<string, Record<string, unknown>>;
  if (Object.keys(parsed).length !== 1 || typeof parsed[name] !== 'object') throw new Error(`not a health body of "${name}": ${answer.body}`);
  return parsed[name]!;
}

/** The address of a health check listener from a daemon's JSON log line ("serving health checks"). */
export function healthAddressFromLog(line: string): string {
  const address = (JSON.parse(line) as { address?: string }).address;
  if (address === undefined) throw new Error(`no address in ${line}`);
  return address;
}
