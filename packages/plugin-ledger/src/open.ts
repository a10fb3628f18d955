import { UsepodError } from '@usepod-agent/core';
import { Ledger, LedgerOpenError } from './ledger.js';

/** `Ledger.open` for the main thread: a ledger that cannot be opened is one coded line (USEPOD_LEDGER). */
export function openLedger(path: string, opts: Parameters<typeof Ledger.open>[1] = {}): Ledger {
  try {
    return Ledger.open(path, opts);
  } catch (err) {
    if (err instanceof LedgerOpenError)
      throw new UsepodError('USEPOD_LEDGER', err.message, { user: true, cause: err });
    throw err;
  }
}
