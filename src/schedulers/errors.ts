/** An invalid scheduler setting or call (bad step count, gamma, strength, timestep, missing noise...). */
export class SchedulerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchedulerError';
  }
}
