// Our provider list for the local cluster's ESO controller, put in place of
// pkg/provider/register/register.go in a build-time copy of the module (scripts/localcluster/addons/eso.sh):
// the stores the collection writes (Vault, AWS) and the ones the tests use (fake, kubernetes, webhook).
// The other 30 providers' cloud SDKs were more than half of a cold build (552 s against 252 s).
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/provider/aws"
	_ "github.com/external-secrets/external-secrets/pkg/provider/fake"
	_ "github.com/external-secrets/external-secrets/pkg/provider/kubernetes"
	_ "github.com/external-secrets/external-secrets/pkg/provider/vault"
	_ "github.com/external-secrets/external-secrets/pkg/provider/webhook"
)
