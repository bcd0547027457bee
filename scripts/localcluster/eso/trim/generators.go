// Our generator list, in place of pkg/generator/register/register.go (see providers.go): the
// generators without a cloud SDK of their own beyond AWS's.
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/generator/ecr"
	_ "github.com/external-secrets/external-secrets/pkg/generator/fake"
	_ "github.com/external-secrets/external-secrets/pkg/generator/password"
	_ "github.com/external-secrets/external-secrets/pkg/generator/sts"
	_ "github.com/external-secrets/external-secrets/pkg/generator/uuid"
	_ "github.com/external-secrets/external-secrets/pkg/generator/vault"
	_ "github.com/external-secrets/external-secrets/pkg/generator/webhook"
)
