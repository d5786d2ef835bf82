// wgsl_reflect's package "main" is a CommonJS file inside a "type": "module" package, which Node cannot load;
// its ES module build is imported by path instead, typed by the package's own declarations.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
