"use server"

// restock sign-up for the Medusa Next.js starter (docs/widget.md#medusa).
// Server action: runs on the Next.js server, so no CORS is involved and RESTOCK_URL stays
// server-only like MEDUSA_BACKEND_URL. It calls restock's Medusa-shaped store route
// (POST /<medusa plugin id>/store/restock-subscriptions) with the storefront's publishable key,
// which restock maps to the key's sales channel (the subscription's scope).

const RESTOCK_URL = process.env.RESTOCK_URL ?? "http://localhost:8000"
const PLUGIN_ID = process.env.RESTOCK_MEDUSA_PLUGIN_ID ?? "medusa"
const PUBLISHABLE_KEY = process.env.NEXT_PUBLIC_MEDUSA_PUBLISHABLE_KEY

export type RestockResult =
  | { ok: true }
  | { ok: false; reason: "invalid_email" | "in_stock" | "rate_limited" | "failed" }

export async function subscribeToRestock(
  variantId: string,
  email: string
): Promise<RestockResult> {
  let response: Response
  try {
    response = await fetch(`${RESTOCK_URL}/${PLUGIN_ID}/store/restock-subscriptions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(PUBLISHABLE_KEY ? { "x-publishable-api-key": PUBLISHABLE_KEY } : {}),
      },
      body: JSON.stringify({ variant_id: variantId, email }),
      cache: "no-store",
    })
  } catch {
    return { ok: false, reason: "failed" }
  }
  if (response.status === 201 || response.status === 200) return { ok: true }
  if (response.status === 429) return { ok: false, reason: "rate_limited" }
  const body = await response.json().catch(() => ({}))
  // Medusa's error shape {type, message} plus restock's {error: {code, message, field}}
  const error = body?.error ?? {}
  if (error.code === "in_stock") return { ok: false, reason: "in_stock" }
  if (error.field === "email") return { ok: false, reason: "invalid_email" }
  return { ok: false, reason: "failed" }
}
