// The dashboard's only way to the server: JSON over hangar's API with the session cookie.
// Unsafe methods are plain same-origin fetches, so the browser sends `Origin` and the
// server's CSRF check passes. Errors are RFC 9457 problem+json: thrown as ApiError with the
// status, `code` and `detail`. A 404 on a route this server does not have (yet) is
// ApiError.notAvailable, which pages show as "not available".

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || '';
    this.problem = problem;
  }

  /** The route does not exist on this server (a feature not built in). */
  get notAvailable() {
    return this.status === 404 && this.code === 'not_found' && /no such route/.test(this.message);
  }
}

/** Signed-out callers get this; the app shell shows the sign-in view. */
export const unauthenticated = new EventTarget();

export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!r.ok) {
    const err = new ApiError(r.status, data || {});
    if (r.status === 401) unauthenticated.dispatchEvent(new Event('signed-out'));
    throw err;
  }
  return data;
}

/** Sign-in providers configured on this server, for the sign-in view (no session needed). */
export async function signinProviders() {
  try {
    return await api('/signin/providers');
  } catch {
    return [];
  }
}
