/** A bad pipeline argument or a model folder whose parts do not fit together. */
export class PipelineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipelineError';
  }
}
