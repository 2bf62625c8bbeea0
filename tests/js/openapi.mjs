// Validates an OpenAPI document (the file named by the first argument)
// against the official OpenAPI 3.0/3.1 JSON schemas, and prints one JSON
// line: {"valid": bool, "version": "3.1", "errors": [...]}.
import { Validator } from "@seriousme/openapi-schema-validator";

const validator = new Validator();
const result = await validator.validate(process.argv[2]);
console.log(JSON.stringify({ valid: result.valid, version: validator.version, errors: result.errors ?? [] }));
