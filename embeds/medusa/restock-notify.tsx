"use client"

// "Notify me when available" for the Medusa Next.js starter (docs/widget.md#medusa).
// In src/modules/products/components/product-actions/index.tsx, after the add-to-cart <Button>:
//   {selectedVariant && !inStock && <RestockNotify variantId={selectedVariant.id} />}
// `inStock` is the starter's own computation (manage_inventory, allow_backorder,
// inventory_quantity), so nothing renders, and nothing shifts, for a variant you can buy.
// Changing the variant remounts the form state through the `key` below.

import { useId, useState } from "react"
import { subscribeToRestock, type RestockResult } from "./restock-actions"

const TEXT = {
  title: "Notify me when available",
  email: "Email",
  consent: "Send me one message when this item is back in stock.",
  submit: "Notify me",
  sending: "Sending…",
  done: "Thanks! We'll email you when it's back.",
  invalid_email: "Enter a valid email address, like name@example.com.",
  consent_missing: "Tick the box so we may send you the message.",
  rate_limited: "Too many attempts. Please wait a minute and try again.",
  failed: "Something went wrong. Please try again.",
}

export default function RestockNotify({ variantId }: { variantId: string }) {
  return <RestockForm key={variantId} variantId={variantId} />
}

function RestockForm({ variantId }: { variantId: string }) {
  const id = useId()
  const [email, setEmail] = useState("")
  const [consent, setConsent] = useState(false)
  const [pending, setPending] = useState(false)
  const [error, setError] = useState<"email" | "consent" | null>(null)
  const [status, setStatus] = useState("")
  const [done, setDone] = useState(false)
  const [inStock, setInStock] = useState(false)
  if (inStock) return null

  async function onSubmit(event: React.FormEvent<HTMLFormElement>) {
    event.preventDefault()
    if (pending) return
    setStatus("")
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email.trim())) {
      setError("email")
      document.getElementById(`${id}-email`)?.focus()
      return
    }
    if (!consent) {
      setError("consent")
      document.getElementById(`${id}-consent`)?.focus()
      return
    }
    setError(null)
    setPending(true)
    const result: RestockResult = await subscribeToRestock(variantId, email.trim())
    setPending(false)
    if (result.ok) {
      setDone(true)
      setStatus(TEXT.done)
    } else if (result.reason === "in_stock") {
      setInStock(true)
    } else if (result.reason === "invalid_email") {
      setError("email")
      document.getElementById(`${id}-email`)?.focus()
    } else {
      setStatus(TEXT[result.reason])
    }
  }

  return (
    <form onSubmit={onSubmit} noValidate aria-labelledby={`${id}-title`} className="flex flex-col gap-y-2 mt-4" data-testid="restock-notify">
      <p id={`${id}-title`} className="txt-medium-plus">{TEXT.title}</p>
      {!done && (
        <>
          <label htmlFor={`${id}-email`} className="txt-small">{TEXT.email}</label>
          <input
            id={`${id}-email`}
            type="email"
            autoComplete="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            aria-invalid={error === "email" || undefined}
            aria-describedby={`${id}-email-error`}
            className="border rounded px-3 py-2"
          />
          <p id={`${id}-email-error`} className="text-rose-600 txt-small">{error === "email" ? TEXT.invalid_email : ""}</p>
          <label className="flex gap-x-2 items-start txt-small">
            <input
              id={`${id}-consent`}
              type="checkbox"
              checked={consent}
              onChange={(e) => setConsent(e.target.checked)}
              aria-invalid={error === "consent" || undefined}
              aria-describedby={`${id}-consent-error`}
            />
            {TEXT.consent}
          </label>
          <p id={`${id}-consent-error`} className="text-rose-600 txt-small">{error === "consent" ? TEXT.consent_missing : ""}</p>
          <button type="submit" disabled={pending} className="border rounded px-3 py-2">
            {pending ? TEXT.sending : TEXT.submit}
          </button>
        </>
      )}
      <p role="status" className="txt-small">{status}</p>
    </form>
  )
}
