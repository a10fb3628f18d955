// Loader hooks of idle-hooks.mjs: tells the main thread every ES module it loads.
let port;
export function initialize(data) {
  port = data.port;
}
export async function load(url, context, next) {
  port.postMessage(url);
  return next(url, context);
}
