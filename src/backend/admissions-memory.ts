import { admitInSteps, type AdmissionStore, type Entrant, type Entry, type EntryPolicy } from './admissions.js'
import type { RevocationStore } from './revocations.js'
import type { SlotStore } from './slots.js'

export class MemoryAdmissions implements AdmissionStore {
  constructor (private readonly slots: SlotStore, private readonly revocations: RevocationStore) {}

  async admit (entrants: readonly Entrant[], policy: EntryPolicy): Promise<Entry[]> {
    return await admitInSteps(this.revocations, this.slots, entrants, policy)
  }
}
