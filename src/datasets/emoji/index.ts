export * from './catalog.js';
export * from './image.js';
