// The generated clients over gRPC-Web to this page's own origin (the
// supaplane-console bridge). The session token goes in the `authorization`
// header of each call, never in a URL.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccountService, AdminService, BillingService, TenantService } from "./gen/supaplane/v1/api_pb.js";

let token: string | null = null;
export function setToken(t: string | null): void {
  token = t;
}

const auth: Interceptor = (next) => async (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: typeof location === "undefined" ? "http://localhost" : location.origin,
  interceptors: [auth],
});

export const accounts = createClient(AccountService, transport);
export const tenants = createClient(TenantService, transport);
export const admin = createClient(AdminService, transport);
export const billing = createClient(BillingService, transport);
export { transport, TenantService };

/** Set by the server in index.html: is supaplane-billing configured? */
export function billingEnabled(): boolean {
  return document.querySelector('meta[name="supaplane-billing"]')?.getAttribute("content") === "on";
}
