import { byId } from './dom.js'

// One confirmation dialog for every destructive action: a native <dialog>
// (modal, keeps focus inside, Escape cancels), Cancel focused first.

export async function confirmAction (title: string, text: string, confirmLabel: string): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm')
  const ok = byId<HTMLButtonElement>('confirm-ok')
  const cancel = byId<HTMLButtonElement>('confirm-cancel')
  byId('confirm-title').textContent = title
  byId('confirm-text').textContent = text
  ok.textContent = confirmLabel
  const opener = document.activeElement as HTMLElement | null
  return await new Promise<boolean>((resolve) => {
    const done = (answer: boolean): void => {
      ok.removeEventListener('click', yes)
      cancel.removeEventListener('click', no)
      dialog.removeEventListener('close', no)
      if (dialog.open) dialog.close()
      opener?.focus()
      resolve(answer)
    }
    const yes = (): void => done(true)
    const no = (): void => done(false)
    ok.addEventListener('click', yes)
    cancel.addEventListener('click', no)
    // Escape closes the dialog: a cancel.
    dialog.addEventListener('close', no)
    dialog.showModal()
    cancel.focus()
  })
}
