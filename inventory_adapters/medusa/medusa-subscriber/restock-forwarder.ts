/**
 * restock-forwarder.ts — copy into your Medusa v2 project as src/subscribers/restock-forwarder.ts
 *
 * Forwards stock-change events (inventory levels and reservations) and order events
 * (order.placed / order.canceled, for revenue attribution) to restock's Medusa adapter
 * route `POST <restock public url>/<adapter id>/events`, signed with HMAC-SHA256.
 *
 * Environment (set them where `medusa start` runs):
 *   RESTOCK_EVENTS_URL    e.g. https://restock.example.com/medusa/events   (unset = do nothing)
 *   RESTOCK_EVENT_SECRET  the same value as the adapter's `event_secret` option
 *
 * Wire format (see docs/plugins/medusa.md):
 *   X-Restock-Event-Id:   a fresh id per Medusa event (retries of one event reuse it)
 *   X-Restock-Timestamp:  unix seconds when it was signed
 *   X-Restock-Signature:  sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *   body: { id, name, data, metadata, inventory_item_ids, variant_ids, location_ids,
 *           occurred_at }
 *
 * Medusa event payloads carry only an id (`ilev_…` / `resitem_…`), so this subscriber looks the
 * inventory item and its variants up with Query before posting; restock then re-reads the
 * variants' availability through the Store API (the payload is only a hint, never trusted).
 */
import type { SubscriberArgs, SubscriberConfig } from "@medusajs/framework"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import crypto from "crypto"

type Payload = { id?: string; order_id?: string }

const ATTEMPTS = 3

async function enrich(container: SubscriberArgs<Payload>["container"], name: string, id?: string) {
  const found = { inventory_item_ids: [] as string[], variant_ids: [] as string[], location_ids: [] as string[] }
  if (!id || name.startsWith("order.")) {
    // order events: restock reads the order itself through the Admin API
    return found
  }
  const entity = name.includes("reservation-item") ? "reservation_item" : "inventory_level"
  try {
    const query = container.resolve(ContainerRegistrationKeys.QUERY)
    const { data } = await query.graph({
      entity,
      filters: { id },
      fields: ["id", "location_id", "inventory_item_id", "inventory_item.variants.id"],
    })
    for (const row of data as any[]) {
      if (row.inventory_item_id) found.inventory_item_ids.push(row.inventory_item_id)
      if (row.location_id) found.location_ids.push(row.location_id)
      for (const variant of row.inventory_item?.variants ?? []) {
        if (variant?.id) found.variant_ids.push(variant.id)
      }
    }
  } catch (e) {
    // a deleted reservation may be gone already; the level event that comes with it suffices
  }
  return found
}

export default async function restockForwarder({ event, container }: SubscriberArgs<Payload>) {
  const url = process.env.RESTOCK_EVENTS_URL
  const secret = process.env.RESTOCK_EVENT_SECRET
  if (!url || !secret) {
    return
  }
  const logger = container.resolve(ContainerRegistrationKeys.LOGGER)
  const extra = await enrich(container, event.name, event.data?.id)
  const eventId = crypto.randomUUID()
  const body = JSON.stringify({
    id: eventId,
    name: event.name,
    data: event.data ?? {},
    metadata: event.metadata ?? {},
    ...extra,
    occurred_at: new Date().toISOString(),
  })
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const timestamp = Math.floor(Date.now() / 1000).toString()
    const signature = crypto.createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-restock-event-id": eventId,
          "x-restock-timestamp": timestamp,
          "x-restock-signature": `sha256=${signature}`,
        },
        body,
        signal: AbortSignal.timeout(10000),
      })
      if (response.ok || (response.status >= 400 && response.status < 500 && response.status !== 429)) {
        if (!response.ok) {
          logger.warn(`restock-forwarder: ${event.name} refused with ${response.status}`)
        }
        return
      }
    } catch (e) {
      // network error: retry below
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt))
  }
  logger.warn(`restock-forwarder: could not deliver ${event.name} after ${ATTEMPTS} attempts`)
}

export const config: SubscriberConfig = {
  // Module events fire for every stock change, reservations included (reference §4);
  // the unprefixed workflow events (2.18+) would duplicate them.
  event: [
    "inventory.inventory-level.created",
    "inventory.inventory-level.updated",
    "inventory.inventory-level.deleted",
    "inventory.reservation-item.created",
    "inventory.reservation-item.updated",
    "inventory.reservation-item.deleted",
    // revenue attribution: restock reads the order (GET /admin/orders/{id}) and counts a
    // purchase by a notified subscriber; needs the adapter's admin_token
    "order.placed",
    "order.canceled",
  ],
}
