// Turning API errors into what a form shows. Pure: unit tested.
import { Code, ConnectError } from "@connectrpc/connect";

export interface ShownError {
  field: string | null; // the request field the API named ("name: must be ...")
  message: string;
  unavailable: boolean;
  unauthenticated: boolean;
  notFound: boolean;
}

export function describeError(e: unknown): ShownError {
  const ce = ConnectError.from(e);
  const raw = ce.rawMessage || Code[ce.code] || "request failed";
  const unavailable = ce.code === Code.Unavailable || (ce.code === Code.Unknown && /fetch|network/i.test(raw));
  const m = /^([a-z_]+): (.*)$/s.exec(raw);
  return {
    field: ce.code === Code.InvalidArgument && m ? m[1] : null,
    message: unavailable ? "The supaplane API cannot be reached right now." : raw,
    unavailable,
    unauthenticated: ce.code === Code.Unauthenticated,
    notFound: ce.code === Code.NotFound,
  };
}
